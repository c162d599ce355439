#!/usr/bin/env bash
# Every check the project has, from a fresh machine: installs what the tests need when it
# is missing (apt-get, as root), then format, lints, MSRV floor, docs, and every test.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
# nutcracker installs to /usr/sbin, which a non-login shell may not have on its PATH.
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"

# memcached and nutcracker (twemproxy) for the integration tests, `kill` (procps) for the
# tests that pause a memcached, python3 for the checks below; OpenSSL headers for the
# `r2d2` feature's `memcache` dependency.
. scripts/install-missing.sh
install_missing memcached:memcached nutcracker:nutcracker kill:procps python3:python3 \
    pkg-config:pkg-config openssl

echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path bench/Cargo.toml -- --check

echo "== cargo clippy -D warnings (default features, then all)"
cargo clippy --lib -- -D warnings
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --all-features -- -D warnings
# The benchmark crate builds apart (actix-session, redis, criterion); it must not rot.
cargo clippy --manifest-path bench/Cargo.toml --all-targets --all-features -- -D warnings

echo "== the examples and a plain cargo test build without OpenSSL (only from_r2d2 needs it)"
# cargo tree fails when no package matches; any other failure (an index not reached) is
# no answer, and fails the check.
if tree=$(cargo tree -e normal,dev -i openssl-sys 2>&1); then
    echo "openssl-sys is in the default build: keep the r2d2 feature out of it" >&2
    echo "$tree" >&2
    exit 1
elif ! grep -q '`openssl-sys` did not match any packages' <<<"$tree"; then
    echo "cargo tree could not tell whether openssl-sys is in the default build:" >&2
    echo "$tree" >&2
    exit 1
fi

# Fails unless `svg` is the chart `script` draws from the saved runs that follow.
chart_is_current() {
    local script=$1 svg=$2 chart
    shift 2
    chart=$(mktemp)
    SVG="$chart" python3 "$script" "$@" >/dev/null
    if ! cmp -s "$chart" "$svg"; then
        echo "$svg is stale: SVG=$svg python3 $script $*" >&2
        exit 1
    fi
    rm -f "$chart"
}
echo "== the benchmark charts are the ones bench/report.py and bench/sizes.py draw from saved runs"
chart_is_current bench/report.py docs/benchmarks.svg bench/results/54-targets.txt
chart_is_current bench/sizes.py docs/sizes.svg bench/results/22-size-*.txt

echo "== every relative link in the README and docs/ resolves"
python3 scripts/check_links.py

echo "== no import circle among the source files"
python3 scripts/check_circles.py

echo "== rust-version is no lower than any dependency's"
cargo metadata --format-version 1 --all-features \
    --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" |
    python3 scripts/check_msrv.py

echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features --quiet

echo "== cargo publish --dry-run (packages and builds what crates.io would get; no warning)"
# --allow-dirty: a local run with changes not yet committed checks them too. A version
# already on crates.io is a release's concern, not the package's: cargo (1.83 on) warns of it
# on a dry run, which would turn every later run red once this version is published.
published=$(cargo publish --dry-run --allow-dirty 2>&1) || { echo "$published" >&2; exit 1; }
if echo "$published" | grep -i '^warning' |
    grep -v -e 'aborting upload due to dry run' -e 'already exists on crates.io index' >&2; then
    exit 1
fi

echo "== cargo test (unit, integration against a real memcached, doc tests)"
# A failing test's message, not its backtrace, ends the log (CI shows its tail); rerun that
# one test with RUST_BACKTRACE=1 for the stack.
export RUST_BACKTRACE=0
# The timing tests mostly sleep: more threads than cores keeps the run short.
cargo test --all-features -- --test-threads=8 --skip concurrent_writers
# The contention tests measure what a retry budget (wall-clock time) achieves, so they run
# alone: beside seven other test threads on two cores, a starved thread spends its budget
# without running.
# A rename would leave both the skip above and this filter matching nothing, and pass.
listed=$(cargo test --all-features --test integration concurrent_writers -- --list 2>/dev/null |
    grep -c ': test$' || true)
if [ "$listed" -lt 2 ]; then
    echo "expected the two concurrent_writers tests, found $listed: update scripts/test.sh" >&2
    exit 1
fi
cargo test --all-features --test integration concurrent_writers -- --test-threads=1

echo "== the memcached releases users run (scripts/test-versions.sh)"
if [ -f ../shared/memcached-versions/build.sh ]; then
    bash scripts/test-versions.sh
else
    echo "skipped: ../shared/memcached-versions is not beside this checkout, so only the" \
        "distribution's memcached ($(memcached -V)) was tested"
fi
