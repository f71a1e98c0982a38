#!/usr/bin/env bash
# Batched acquire throughput of the client libraries, side by side, in one
# run on one local cluster: the Rust client (vss-bench acquire-batch, one
# vss-client with CONCURRENCY acquires in flight), the Go client
# (client/go/cmd/vss-gobench, one client, CONCURRENCY goroutines) and, when
# client/python/bench.py exists and VSS_PYTHON names a Python with the
# package installed, the Python client. Every client coalesces concurrent
# acquires into AcquireBatch calls. The clients take turns, ROUNDS rounds
# (A B C, A B C, ...), and the script prints each client's median and its
# ratio to the Rust client's median of the same run.
#
# Environment: VSS_RUNTIME_BIN (default: target/release/vss-runtime, built
# if missing), VSS_BENCH_BIN (default: target/release/vss-bench, built if
# missing), VSS_PYTHON, ROUNDS (5), SECONDS_PER_ROUND (5), CONCURRENCY
# (64), SLOT (1: examples/slots.yaml's per-key bucket, its single bucket
# here), WARMUP (1s). Everything it starts it stops, by PID. The machine
# is shared: only ratios within one run mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECONDS_PER_ROUND=${SECONDS_PER_ROUND:-5}
CONCURRENCY=${CONCURRENCY:-64}
SLOT=${SLOT:-1}
WARMUP=${WARMUP:-1s}

RUNTIME=${VSS_RUNTIME_BIN:-target/release/vss-runtime}
BENCH=${VSS_BENCH_BIN:-target/release/vss-bench}
if [[ ! -x "$RUNTIME" || ! -x "$BENCH" ]]; then
    echo "== building vss-runtime and vss-bench (release)"
    rustup target add wasm32-wasip2 >/dev/null
    cargo build -q --release -p vss-runtime -p vss-bench
    RUNTIME=target/release/vss-runtime
    BENCH=target/release/vss-bench
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building vss-gobench (client/go)"
(cd client/go && go build -o "$work/vss-gobench" ./cmd/vss-gobench)
GOBENCH=$work/vss-gobench

python_bench=
if [[ -f client/python/bench.py ]]; then
    if [[ -n "${VSS_PYTHON:-}" ]]; then
        python_bench="$VSS_PYTHON client/python/bench.py"
    else
        echo "== client/python/bench.py is here but VSS_PYTHON is not set: the Python client is NOT measured"
        echo "   (set VSS_PYTHON to a Python with the package installed: pip install ./client/python)"
    fi
else
    echo "== no client/python/bench.py: the Python client is NOT measured"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One local cluster of 3 instances with examples/slots.yaml.
endpoints=()
peers=()
declare -a grpc mesh http
for i in 0 1 2; do
    grpc[i]=$(free_port); mesh[i]=$(free_port); http[i]=$(free_port)
    peers+=("vss-$i=127.0.0.1:${mesh[i]}")
    endpoints+=("127.0.0.1:${grpc[i]}")
done
peer_list=$(IFS=,; echo "${peers[*]}")
endpoint_list=$(IFS=,; echo "${endpoints[*]}")
for i in 0 1 2; do
    "$RUNTIME" --config examples/slots.yaml --id "vss-$i" --listen "127.0.0.1:${grpc[i]}" \
        --mesh-listen "127.0.0.1:${mesh[i]}" --http-listen "127.0.0.1:${http[i]}" --peers "$peer_list" \
        >"$work/vss-$i.log" 2>&1 &
    pids+=($!)
done
echo "== cluster: $endpoint_list ($RUNTIME)"
for _ in $(seq 150); do
    if "$BENCH" -e "$endpoint_list" -c 1 -i 1 -d 100ms --warmup 0ms acquire --slot "$SLOT" >/dev/null 2>&1 \
        && "$GOBENCH" --endpoints "$endpoint_list" --slot "$SLOT" --concurrency 1 --duration 100ms --warmup 0s \
            2>/dev/null | grep -q '"errors":0'; then
        break
    fi
    sleep 0.2
done
sleep 1 # let the routing table settle on every instance

# Each line of $work/<client>.txt: one round's decisions per second.
run_rust() {
    "$BENCH" -e "$endpoint_list" -c 1 -i "$CONCURRENCY" -d "${SECONDS_PER_ROUND}s" --warmup "$WARMUP" \
        -o json acquire-batch --slot "$SLOT" \
        | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["throughput"], d["ok"]+d["errors"], d["errors"])'
}
run_go() {
    "$GOBENCH" --endpoints "$endpoint_list" --slot "$SLOT" --concurrency "$CONCURRENCY" \
        --duration "${SECONDS_PER_ROUND}s" --warmup "$WARMUP" \
        | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().splitlines()[-1]); print(d["decisions_per_s"], d["calls"], d["errors"])'
}
run_python() {
    $python_bench --endpoints "$endpoint_list" --slot "$SLOT" --concurrency "$CONCURRENCY" \
        --duration "${SECONDS_PER_ROUND}s" --warmup "$WARMUP" \
        | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().splitlines()[-1]); print(d["decisions_per_s"], d["calls"], d["errors"])'
}

clients=(rust go)
[[ -n "$python_bench" ]] && clients+=(python)
echo "== $ROUNDS rounds of ${SECONDS_PER_ROUND}s each, clients alternating: ${clients[*]}; $CONCURRENCY acquires in flight, slot $SLOT"
for round in $(seq "$ROUNDS"); do
    for client in "${clients[@]}"; do
        line=$("run_$client")
        echo "$line" >>"$work/$client.txt"
        read -r rate calls errors <<<"$line"
        printf 'round %d  %-6s %12.0f decisions/s  (%s calls, %s errors)\n' "$round" "$client" "$rate" "$calls" "$errors"
    done
done

echo "== medians over $ROUNDS rounds, ratio to the Rust client's median"
python3 - "$work" "${clients[@]}" <<'EOF'
import statistics, sys
work, clients = sys.argv[1], sys.argv[2:]
rows = {}
for c in clients:
    lines = [l.split() for l in open(f"{work}/{c}.txt") if l.strip()]
    rows[c] = (statistics.median(float(l[0]) for l in lines), sum(int(l[2]) for l in lines))
rust = rows["rust"][0]
print(f"{'client':8} {'median decisions/s':>20} {'vs rust':>8} {'errors':>7}")
for c in clients:
    median, errors = rows[c]
    print(f"{c:8} {median:20.0f} {median / rust:8.2f} {errors:7d}")
EOF
