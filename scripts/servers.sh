# Sourced by the scripts that start servers. Makes a work directory, $work, removed on
# exit, when every process started is stopped by its pid: those in the array $pids and
# those whose pidfile is $work/*.pid. Then:
#   port=$(free_port)      a loopback port nothing listens on now
#   wait_port PORT [TRIES] waits (TRIES x 50 ms, default 200) until something listens on it
work=$(mktemp -d)
pids=()
cleanup() {
    local pid f stopping=("${pids[@]}")
    # A pidfile gone meanwhile (its process exited) names nothing to stop.
    for f in "$work"/*.pid; do pid=$(cat "$f" 2>/dev/null) && stopping+=("$pid"); done
    for pid in "${stopping[@]}"; do kill "$pid" 2>/dev/null || true; done
    # A daemon writes its last log lines as it stops (redis does): the directory goes once
    # they are gone, or 5 s on, or its removal fails and so does the script that ran fine.
    for pid in "${stopping[@]}"; do
        for _ in $(seq 50); do running "$pid" || break; sleep 0.1; done
    done
    rm -rf "$work"
}
# Whether process PID is still running (a zombie, stopped and not yet reaped, is not).
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $state != Z* ]]
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# A connection to itself does not count: a connect to a port nobody listens on yet may be
# given that port as its own and connect to itself (TCP's simultaneous open).
wait_port() {
    local listening='import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)
sys.exit(s.getsockname() == s.getpeername())'
    for _ in $(seq "${2:-200}"); do
        python3 -c "$listening" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on port $1" >&2
    return 1
}
