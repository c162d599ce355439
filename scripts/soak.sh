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

. scripts/install-missing.sh
install_missing memcached:memcached pkg-config:pkg-config openssl

echo "== building the soak test (release)"
cargo build --release --quiet --manifest-path bench/Cargo.toml --bin soak
echo "== soaking for ${DURATION:-120} s with ${SESSIONS:-200} sessions"
exec bench/target/release/soak
