#!/usr/bin/env bash
# Side by side, in one run on this machine: token-bucket decisions from a
# VSS instance (vss-bench against vss-runtime with examples/slots.yaml,
# slot 1: a bucket of 10 refilled by 1 per second, one key) and from Redis
# running the same bucket as a Lua script (EVALSHA; redis-benchmark), at 1,
# 64 and 256 requests in flight. Prints a table of VSS/Redis ratios. The
# same bucket answers Envoy's ShouldRateLimit too (slot 1's `rls` rule,
# domain edge, one remote_address): its rate is measured beside Acquire's.
#
# Installs redis-server from Debian's packages if absent. Everything it
# starts, it stops (by PID). The machine is shared and noisy: only ratios
# within one run mean anything.
#
# Still to come (issue 17): fan-out against NATS and Redis pub/sub, idle
# connections' memory.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_POINT=${BENCH_SECONDS:-5}
LEVELS=(1 64 256)

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
    echo "== installing redis-server and redis-tools (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools >/dev/null
fi

# VSS_RUNTIME_BIN: a vss-runtime built elsewhere (e.g. .ci/build-images'
# musl binary); otherwise both are built here.
if [[ -n "${VSS_RUNTIME_BIN:-}" ]]; then
    RUNTIME=$VSS_RUNTIME_BIN
    echo "== building vss-bench (release); vss-runtime from $RUNTIME"
    cargo build -q --release -p vss-bench
else
    RUNTIME=target/release/vss-runtime
    echo "== building vss-runtime and vss-bench (release)"
    rustup target add wasm32-wasip2 >/dev/null
    cargo build -q --release -p vss-runtime -p vss-bench
fi
BENCH=target/release/vss-bench

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

redis_port=$(free_port)
redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
    --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
vss_port=$(free_port)
"$RUNTIME" --config examples/slots.yaml --id bench --listen "127.0.0.1:$vss_port" --mesh-listen 127.0.0.1:0 \
    >"$work/vss.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
    if redis-cli -p "$redis_port" ping >/dev/null 2>&1 \
        && "$BENCH" -e "127.0.0.1:$vss_port" -c 1 -i 1 -d 100ms --warmup 0ms acquire --slot 1 >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done

# The same bucket as slot 1: 10 tokens, one more every 1000 ms, whole
# tokens at whole periods.
script='local b = redis.call("HMGET", KEYS[1], "tokens", "ts")
local cap, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call("TIME")
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local tokens, ts = tonumber(b[1]) or cap, tonumber(b[2]) or now
local add = math.floor((now - ts) / period)
if add > 0 then tokens = math.min(cap, tokens + add); ts = ts + add * period end
local granted = 0
if tokens >= 1 then tokens = tokens - 1; granted = 1 end
redis.call("HSET", KEYS[1], "tokens", tokens, "ts", ts)
return granted'
sha=$(redis-cli -p "$redis_port" SCRIPT LOAD "$script")

results="$work/results.tsv"
for level in "${LEVELS[@]}"; do
    if ((level >= 64)); then connections=$((level / 16)); else connections=1; fi
    per=$((level / connections))
    echo "== $level in flight"
    "$BENCH" -o json -e "127.0.0.1:$vss_port" -c "$connections" -i "$per" \
        -d "${SECONDS_PER_POINT}s" --warmup 1s acquire --slot 1 >"$work/vss.json"
    "$BENCH" -o json -e "127.0.0.1:$vss_port" -c "$connections" -i "$per" \
        -d "${SECONDS_PER_POINT}s" --warmup 1s rls --domain edge --key remote_address >"$work/rls.json"
    # The same acquires through vss-client, which coalesces concurrent
    # ones into AcquireBatch calls (one client, all requests in flight on it).
    "$BENCH" -o json -e "127.0.0.1:$vss_port" -c 1 -i "$level" \
        -d "${SECONDS_PER_POINT}s" --warmup 1s acquire-batch --slot 1 >"$work/batch.json"
    # redis-benchmark takes a request count: about SECONDS_PER_POINT worth
    # at the rate a short probe reaches.
    probe=$(redis-benchmark -p "$redis_port" -c "$level" -n 20000 --csv EVALSHA "$sha" 1 bench 10 1000 | tail -1)
    rps=$(python3 -c 'import csv,sys; r=list(csv.reader([sys.argv[1]]))[0]; print(int(float(r[1])))' "$probe")
    redis-benchmark -p "$redis_port" -c "$level" -n $((rps * SECONDS_PER_POINT)) --csv \
        EVALSHA "$sha" 1 bench 10 1000 | tail -1 >"$work/redis.csv"
    python3 - "$level" "$work/vss.json" "$work/redis.csv" "$work/rls.json" "$work/batch.json" >>"$results" <<'PY'
import csv, json, sys
level, vss_file, redis_file, rls_file, batch_file = sys.argv[1:]
v = json.load(open(vss_file))
e = json.load(open(rls_file))
b = json.load(open(batch_file))
r = list(csv.reader(open(redis_file)))[0]
# redis-benchmark: test, rps, avg, min, p50, p95, p99, max (ms)
print("\t".join(str(x) for x in [
    level, round(v["throughput"]), v["errors"], v["latencyUs"]["p50"], v["latencyUs"]["p99"],
    round(float(r[1])), round(float(r[4]) * 1000), round(float(r[6]) * 1000),
    round(e["throughput"]), e["errors"], e["latencyUs"]["p99"],
    round(b["throughput"]), b["errors"], b["latencyUs"]["p50"], b["latencyUs"]["p99"],
]))
PY
done

echo
echo "Token-bucket decisions, one bucket, one run (VSS: vss-bench over gRPC; Redis: EVALSHA via redis-benchmark)"
python3 - "$results" <<'PY'
import sys
print("| in flight | VSS decisions/s | Redis+Lua decisions/s | VSS / Redis | VSS p50 / p99 µs | Redis p50 / p99 µs | VSS RLS decisions/s | RLS / Redis | RLS p99 µs |")
print("|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    level, v, errors, vp50, vp99, r, rp50, rp99, e, eerrors, ep99, *_ = line.strip().split("\t")
    ratio = int(v) / max(int(r), 1)
    note = f" ({errors} errors)" if int(errors) else ""
    enote = f" ({eerrors} errors)" if int(eerrors) else ""
    print(f"| {level} | {int(v):,}{note} | {int(r):,} | {ratio:.2f}× | {vp50} / {vp99} | {rp50} / {rp99} "
          f"| {int(e):,}{enote} | {int(e) / max(int(r), 1):.2f}× | {ep99} |")
PY

echo
echo "The same decisions through vss-client, which coalesces concurrent acquires into AcquireBatch calls"
python3 - "$results" <<'PY'
import sys
print("| in flight | VSS batched decisions/s | Redis+Lua decisions/s | batched / Redis | batched / VSS unary | batched p50 / p99 µs |")
print("|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    f = line.strip().split("\t")
    level, v, r, b, berrors, bp50, bp99 = f[0], int(f[1]), int(f[5]), int(f[11]), int(f[12]), f[13], f[14]
    note = f" ({berrors} errors)" if berrors else ""
    print(f"| {level} | {b:,}{note} | {r:,} | {b / max(r, 1):.2f}× | {b / max(v, 1):.2f}× | {bp50} / {bp99} |")
PY
