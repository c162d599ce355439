# Sourced by the scripts: installs, with apt-get as root (or through sudo where it needs
# no password: it never prompts), the Debian packages whose commands are missing, or says
# how to and exits.
#   install_missing memcached:memcached wrk:wrk openssl
# Each argument is COMMAND:PACKAGE, COMMAND looked for as a file on PATH (`type -P`: bash's
# builtin `kill` does not count, the tests run procps's); `openssl` stands for OpenSSL's
# headers (libssl-dev, checked with pkg-config).
install_missing() {
    local missing=() item
    for item in "$@"; do
        if [ "$item" = openssl ]; then
            pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
        else
            type -P "${item%%:*}" >/dev/null || missing+=("${item##*:}")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local as_root=()
    if [ "$(id -u)" != 0 ] && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    fi
    if { [ "$(id -u)" = 0 ] || [ ${#as_root[@]} -ne 0 ]; } && command -v apt-get >/dev/null 2>&1; then
        echo "== installing ${missing[*]} (apt-get)"
        "${as_root[@]}" apt-get update -qq
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "missing ${missing[*]}, and this is not root with apt-get: run" >&2
        echo "    sudo apt-get install -y ${missing[*]}" >&2
        echo "then run this script again." >&2
        exit 1
    fi
}
