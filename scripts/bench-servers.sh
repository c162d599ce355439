# Sourced by the scripts that run the bench server, after scripts/servers.sh ($work). Builds
# what the servers in $SERVERS need, in release mode:
#   build_bench_servers    the bench server; with a `memcache-metrics*` server in $SERVERS
#                          also its `metrics` build; with BASELINE=<revision> also that revision's
#                          (in bench/target-baseline, kept for the next run)
#   bench_server SERVER    prints the binary that runs SERVER and the kind to pass it: a
#                          server named <kind>-baseline is <kind> at $BASELINE
build_bench_servers() {
    local build=(cargo build --release --quiet --bin bench-server)
    echo "== building the bench server (release)"
    if [[ " $SERVERS " == *" memcache-metrics"* ]]; then
        "${build[@]}" --manifest-path bench/Cargo.toml --features metrics
        cp bench/target/release/bench-server "$work/bench-server-metrics"
    fi
    "${build[@]}" --manifest-path bench/Cargo.toml
    if [ -n "${BASELINE:-}" ]; then
        echo "== building the bench server at $BASELINE (release)"
        git worktree add --quiet --detach "$work/baseline" "$BASELINE"
        CARGO_TARGET_DIR="$PWD/bench/target-baseline" "${build[@]}" \
            --manifest-path "$work/baseline/bench/Cargo.toml"
        cp bench/target-baseline/release/bench-server "$work/bench-server-baseline"
        git worktree remove --force "$work/baseline"
    fi
}

bench_server() {
    case $1 in
        memcache-metrics*) echo "$work/bench-server-metrics $1" ;;
        *-baseline) echo "$work/bench-server-baseline ${1%-baseline}" ;;
        *) echo "bench/target/release/bench-server $1" ;;
    esac
}
