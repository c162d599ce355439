#!/usr/bin/env bash
# The load benchmark: this crate (MemcacheStore, and from_r2d2) against its references (the
# one-round-trip floor, a do-nothing middleware) and actix-session (Redis store, cookie
# store), four routes each, wrk -t2 -c64, servers interleaved over ROUNDS rounds; prints a
# table of req/s, p50, p99 and ratios, and this crate's ratios to its targets. Every other
# round runs the servers in reverse order, so use an even ROUNDS to compare two servers.
# Installs memcached, redis-server and wrk with apt-get when missing. Stops only the
# processes it started, by pid.
#
#   bash scripts/bench.sh                 # 2 rounds of 10 s per server and route
#   ROUNDS=3 DURATION=20s bash scripts/bench.sh
# SESSIONS (default 4000, or 4 per connection when that is more) must be large enough that
# a wrk thread does not come back to a session while its last request is still in flight:
# with 100, /incr sees a few 409s, which is this crate refusing a lost update that
# actix-session would make silently; with 1000, a stall of the machine was once enough for
# 5 of the floor's 740,000 compare-and-swaps.
#   MEMCACHED_THREADS=2 (memcached -t, default 4 as memcached's own), MEMCACHE_CONNECTIONS=1
#   (the store's pool_max_size), SERVERS="memcache actix-redis" and ROUTES="read incr" are
#   knobs for experiments; SERVERS may also name memcache-exp (this crate's middleware over
#   memcache::exp's client), memcache-3 (MemcacheStore over three memcached servers),
#   memcache-text (the text protocol), memcache-proxy (text, through nutcracker over the
#   first memcached), memcache-bound (every session bound to a user, for sign out
#   everywhere) and memcache-metrics (the `metrics` feature with a Prometheus recorder;
#   built apart, so that `memcache` runs without the feature; memcache-metrics-atomic has
#   the bench's atomic recorder instead, to tell the crate's cost from the exporter's):
#   SERVERS="memcache memcache-3" ROUTES="read incr" ROUNDS=5 bash scripts/bench.sh
#   SERVERS="memcache memcache-text memcache-proxy" ROUTES="read incr" bash scripts/bench.sh
#   SERVERS="memcache memcache-bound" ROUTES="read incr" ROUNDS=5 bash scripts/bench.sh
#   SERVERS="memcache memcache-metrics" ROUTES="read incr" ROUNDS=5 bash scripts/bench.sh
# CONNECTIONS (wrk -c, default 64) and SESSION_BYTES (the size of each session's string,
# default 200) scale the load:
#   CONNECTIONS=1024 SERVERS="floor memcache" ROUTES="read incr" bash scripts/bench.sh
# The route `write` is WRITERS (default 8) concurrent writers of one session, each on its
# own key, one connection each; it also reports memcached's compare-and-swap counters:
#   WRITERS=64 SERVERS=memcache ROUTES=write bash scripts/bench.sh
# BASELINE=<git revision> also builds that revision's bench server (in bench/target-baseline,
# kept for the next run) and runs it as every server named <server>-baseline, to measure a
# change against the commit before it in one run:
#   BASELINE=HEAD~1 SERVERS="memcache memcache-baseline" ROUNDS=5 bash scripts/bench.sh
# SERVER_WORKERS (default 2, one per core) sets the bench server's actix workers.
# Every run also reports the server's CPU time per request (/proc/<pid>/stat around the
# run). PROFILE_DIR=dir records each run with `perf record -g` on the server into
# dir/<server>-<route>-<round>.data (installs linux-perf when missing):
#   PROFILE_DIR=/tmp/prof SERVERS="floor memcache" ROUTES=read ROUNDS=1 bash scripts/bench.sh
# STAGES_DIR=dir has `floor` and `memcache*` time each request's stages (bench/src/stages.rs)
# into dir/<server>-<round>.txt; bench/stages.py dir tabulates them:
#   STAGES_DIR=/tmp/stages SERVERS="floor memcache" ROUTES="read incr" ROUNDS=3 bash scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
SERVERS=${SERVERS:-"floor do-nothing memcache memcache-r2d2 actix-redis actix-cookie"}
CONNECTIONS=${CONNECTIONS:-64}
SESSIONS=${SESSIONS:-$((CONNECTIONS * 4 > 4000 ? CONNECTIONS * 4 : 4000))}
WRITERS=${WRITERS:-8}
export SESSION_BYTES=${SESSION_BYTES:-200}
export SERVER_WORKERS=${SERVER_WORKERS:-2}
ROUTES=${ROUTES:-"plain read incr login"}

. scripts/install-missing.sh
install_missing memcached:memcached nutcracker:nutcracker redis-server:redis-server wrk:wrk \
    pkg-config:pkg-config openssl
if [ -n "${PROFILE_DIR:-}" ]; then
    install_missing perf:linux-perf
    mkdir -p "$PROFILE_DIR"
fi
. scripts/servers.sh

. scripts/bench-servers.sh
build_bench_servers

# User and system CPU time of process $1 so far, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

as_root=()
[ "$(id -u)" = 0 ] && as_root=(-u root)
# Three memcached servers: the first alone serves the one-server runs.
mc_ports=()
for i in 1 2 3; do
    port=$(free_port)
    memcached "${as_root[@]}" -l 127.0.0.1 -p "$port" -U 0 -m 1024 -t "${MEMCACHED_THREADS:-4}" \
        -d -P "$work/memcached-$i.pid"
    mc_ports+=("$port")
done
mc_port=${mc_ports[0]}
# nutcracker in front of the first memcached, for memcache-proxy.
nc_port=$(free_port)
printf 'pool:\n  listen: 127.0.0.1:%s\n  hash: md5\n  distribution: ketama\n  timeout: 1000\n  servers:\n   - 127.0.0.1:%s:1\n' \
    "$nc_port" "$mc_port" >"$work/nutcracker.yml"
nutcracker -c "$work/nutcracker.yml" -d -p "$work/nutcracker.pid" -o "$work/nutcracker.log" \
    -s "$(free_port)"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$work/redis.pid" --logfile "$work/redis.log"
for port in "${mc_ports[@]}" "$nc_port"; do wait_port "$port"; done
wait_port "$redis_port"

results="$work/results.tsv"
read -ra servers <<<"$SERVERS"
for round in $(seq "$ROUNDS"); do
    # Every other round runs the servers in reverse: measured here, a pair run in one
    # order and then the other gave whichever ran second about 3% more req/s.
    order=("${servers[@]}")
    if ((round % 2 == 0)); then
        order=()
        for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[i]}"); done
    fi
    for server in "${order[@]}"; do
        case $server in
            memcache-proxy) url="memcache://127.0.0.1:$nc_port" ;;
            memcache-3) url="memcache://127.0.0.1:${mc_ports[0]},127.0.0.1:${mc_ports[1]},127.0.0.1:${mc_ports[2]}" ;;
            memcache* | floor) url="memcache://127.0.0.1:$mc_port" ;;
            actix-redis) url="redis://127.0.0.1:$redis_port" ;;
            *) url="" ;;
        esac
        port=$(free_port)
        read -r bin kind < <(bench_server "$server")
        if [ -n "${STAGES_DIR:-}" ]; then
            STAGES="$STAGES_DIR/$server-$round.txt" "$bin" "$kind" "$port" "$url" &
        else
            "$bin" "$kind" "$port" "$url" &
        fi
        pid=$!
        pids+=("$pid")
        wait_port "$port"
        python3 bench/mint.py "http://127.0.0.1:$port" "$SESSIONS" "$work/cookies"
        for route in $ROUTES; do
            perf_pid=
            if [ -n "${PROFILE_DIR:-}" ]; then
                perf record -q -g -p "$pid" -o "$PROFILE_DIR/$server-$route-$round.data" &
                perf_pid=$!
            fi
            cpu=$(cpu_ticks "$pid")
            if [ "$route" = write ]; then
                read -r hits badval < <(python3 bench/mcstats.py "$mc_port")
                line=$(wrk -t"$WRITERS" -c"$WRITERS" -d"$DURATION" --latency -s bench/wrk.lua \
                    "http://127.0.0.1:$port/" -- "$work/cookies" "$WRITERS" write | grep '^RESULT')
                read -r hits2 badval2 < <(python3 bench/mcstats.py "$mc_port")
                line="$line $((hits2 - hits)) $((badval2 - badval))"
            else
                line=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/wrk.lua \
                    "http://127.0.0.1:$port/$route" -- "$work/cookies" 2 | grep '^RESULT')
            fi
            cpu=$(($(cpu_ticks "$pid") - cpu))
            if [ -n "$perf_pid" ]; then
                kill -INT "$perf_pid"
                wait "$perf_pid" || true
            fi
            echo "$server $route $round $cpu ${line#RESULT }" | tee -a "$results"
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
    done
done

echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(uname -sr);" \
    "memcached $(memcached -V | cut -d' ' -f2), redis $(redis-server -v | sed 's/.*v=\([^ ]*\).*/\1/'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "Command: ${BASELINE:+BASELINE=$BASELINE }SERVERS=\"$SERVERS\" ROUTES=\"$ROUTES\" ROUNDS=$ROUNDS DURATION=$DURATION SESSIONS=$SESSIONS CONNECTIONS=$CONNECTIONS WRITERS=$WRITERS SESSION_BYTES=$SESSION_BYTES MEMCACHED_THREADS=${MEMCACHED_THREADS:-4} SERVER_WORKERS=$SERVER_WORKERS bash scripts/bench.sh"
echo
BASELINE=${BASELINE:-} python3 bench/report.py "$results"
