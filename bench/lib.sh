# Shell helpers the bench scripts share (sourced, not run): free ports,
# instances started and stopped by PID, readiness, CPU seconds from /proc.
# The sourcing script sets `work` (a scratch folder) and BENCH (vss-bench).

pids=()

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Instances started in a subshell (start's output read through a pipe) are
# not this shell's children, so `wait` returns at once for them: they are
# then waited for by polling, up to 10 s each.
stop_all() {
    local pid i
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    done
    pids=()
}

# CPU seconds (user + system) of the given PIDs so far, one line each.
cpu_each() {
    python3 - "$@" <<'PY'
import os, sys
tick = os.sysconf("SC_CLK_TCK")
for pid in sys.argv[1:]:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    print((int(fields[11]) + int(fields[12])) / tick)
PY
}

# start BIN N CONFIG: N instances of BIN as one cluster serving CONFIG;
# prints "client-address http-address" per instance and records the PIDs,
# one per line, in $work/pids.
start() {
    local bin=$1 n=$2 config=$3 peers="" i
    local -a listen mesh http
    for ((i = 0; i < n; i++)); do
        listen[i]=$(free_port); mesh[i]=$(free_port); http[i]=$(free_port)
        peers+="${peers:+,}vss-$i=127.0.0.1:${mesh[i]}"
    done
    : >"$work/pids"
    for ((i = 0; i < n; i++)); do
        local args=(--config "$config" --id "vss-$i" --listen "127.0.0.1:${listen[i]}"
            --mesh-listen "127.0.0.1:${mesh[i]}" --http-listen "127.0.0.1:${http[i]}")
        ((n > 1)) && args+=(--peers "$peers")
        "$bin" "${args[@]}" >>"$work/runtime.log" 2>&1 &
        pids+=($!)
        echo $! >>"$work/pids"
        echo "127.0.0.1:${listen[i]} 127.0.0.1:${http[i]}"
    done
}

# An instance that answers an acquire on SLOT (it holds a routing table).
wait_ready() {
    local addr=$1 slot=${2:-1} i
    for i in $(seq 200); do
        if "$BENCH" -e "$addr" -c 1 -i 1 -d 100ms --warmup 0ms acquire --slot "$slot" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    echo "instance at $addr never answered (log: $work/runtime.log)" >&2
    return 1
}
