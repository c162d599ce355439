#!/usr/bin/env bash
# The soak test: minutes of mixed session traffic (login, read, increment, renew) against
# a real memcached that is killed and restarted at random times, checking on every
# response that no session sees another's data, that committed increments equal the
# counter (503s may or may not have landed), that nothing answers 5xx but 503, and that
# sessions are lost only with a restart. Prints the figures; exits 1 on any violation.
# Not part of CI (it runs for minutes). Installs memcached with apt-get when missing.
#
#   bash scripts/soak.sh                      # 120 s, 200 sessions
#   DURATION=600 SESSIONS=500 bash scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

missing=()
for tool in memcached pkg-config; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing ${missing[*]} (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing ${missing[*]}: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

echo "== building the soak test (release)"
cargo build --release --quiet --manifest-path bench/Cargo.toml --bin soak
echo "== soaking for ${DURATION:-120} s with ${SESSIONS:-200} sessions"
exec bench/target/release/soak
