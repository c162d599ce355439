#!/usr/bin/env bash
# The memcached integration tests against each memcached release users run, with every
# default: builds each release kept in ../shared/memcached-versions (its build.sh) and runs
# the integration suites with it (MEMCACHED=<that build>), the middle server of the
# three-server fleet being the distribution's memcached (a fleet of mixed versions).
#
#   bash scripts/test-versions.sh              # every release in the folder
#   bash scripts/test-versions.sh 1.6.14 1.5.22
#   MEMCACHED_VERSIONS=/path/to/folder bash scripts/test-versions.sh
#
# scripts/test.sh runs it when the folder is there, and says so when it is not.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin:/sbin"
folder=${MEMCACHED_VERSIONS:-../shared/memcached-versions}
if [ ! -f "$folder/build.sh" ]; then
    echo "no memcached releases at $folder (set MEMCACHED_VERSIONS to the folder holding build.sh)" >&2
    exit 2
fi
. scripts/install-missing.sh
install_missing memcached:memcached nutcracker:nutcracker pkg-config:pkg-config openssl

versions=("$@")
if [ ${#versions[@]} -eq 0 ]; then
    mapfile -t versions < <(ls "$folder" | sed -n 's/^memcached-\(.*\)\.tar\.gz$/\1/p' | sort -V)
fi
if [ ${#versions[@]} -eq 0 ]; then
    echo "no memcached-*.tar.gz in $folder: no release to test" >&2
    exit 2
fi
other=$(command -v memcached)
echo "== memcached releases: ${versions[*]}; the fleet's middle server: $("$other" -V)"
failed=()
for v in "${versions[@]}"; do
    binary=$(bash "$folder/build.sh" "$v")
    echo "== memcached $v ($binary)"
    if ! MEMCACHED="$binary" MEMCACHED_OTHER="$other" cargo test --all-features --test integration \
        -- --test-threads=8 --skip concurrent_writers; then
        failed+=("$v")
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "== failed against memcached ${failed[*]}" >&2
    exit 1
fi
echo "== every memcached release passed: ${versions[*]}"
