#!/usr/bin/env bash
# Side by side, in one run on this machine: token-bucket decisions from a
# VSS instance (vss-bench against vss-runtime with examples/slots.yaml,
# slot 1: a bucket of 10 refilled by 1 per second, one key) and from Redis
# running the same bucket as a Lua script (EVALSHA; redis-benchmark), at 1,
# 64 and 256 requests in flight. Prints a table of VSS/Redis ratios. The
# same unary Acquire is also driven by h2load (nghttp2's HTTP/2 load tool,
# in C, as lean a client as redis-benchmark) with a prebuilt gRPC request
# as its data file, so the server is compared without vss-bench's own cost
# (a Tokio/tonic client on the same cores). The
# same bucket answers Envoy's ShouldRateLimit too (slot 1's `rls` rule,
# domain edge, one remote_address): its rate is measured beside Acquire's.
#
# Then broadcast fan-out of a 36-byte message to S = 100, 1,000 and 5,000
# subscribers in other processes than the server: VSS (vss-bench publish:
# every delivery acknowledged, the publish returns when all are), NATS core
# and Redis pub/sub (bench/pubsub, a Go tool: no acknowledgements, timed to
# the last subscriber's receipt; NATS also with an application-level ack
# from each subscriber). And the servers' memory per idle client, each on
# its own connection with one subscription (VSS: an open event stream),
# on freshly started servers, followed by broadcasts to all VSS clients.
#
# Installs redis-server, nats-server and h2load (nghttp2-client) from
# Debian's packages if absent.
# Everything it starts, it stops (by PID). The machine is shared and noisy:
# only ratios within one run mean anything.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_POINT=${BENCH_SECONDS:-5}
LEVELS=(1 64 256)
# Fan-out: subscribers per broadcast. Idle: clients whose memory is read.
read -r -a FANOUT_LEVELS <<<"${FANOUT_SUBSCRIBERS:-100 1000 5000}"
IDLE_CLIENTS=${IDLE_CLIENTS:-15000}
# Broadcasts to all idle VSS clients once their memory is read.
IDLE_BROADCASTS=${IDLE_BROADCASTS:-20}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null \
    || ! command -v nats-server >/dev/null || ! command -v h2load >/dev/null; then
    echo "== installing redis-server, redis-tools, nats-server and nghttp2-client (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq redis-server redis-tools nats-server nghttp2-client >/dev/null
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

echo "== building bench/pubsub (Go: nats.go, go-redis)"
(cd bench/pubsub && go build -o "$work/pubsub" .)
PUBSUB=$work/pubsub

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

# h2load's request body: one gRPC message (not compressed, 2 bytes long),
# AcquireRequest { slot: 1 }, the same call vss-bench makes.
printf '\x00\x00\x00\x00\x02\x08\x01' >"$work/acquire.grpc"
# h2load_acquire CONNECTIONS STREAMS OUT: unary Acquires over CONNECTIONS,
# STREAMS in flight on each, for SECONDS_PER_POINT after 1 s of warm-up.
# h2load counts HTTP answers, not gRPC statuses: vss-bench's error count on
# the same server and bucket stands for both.
h2load_acquire() {
    h2load -c "$1" -m "$2" -D "$SECONDS_PER_POINT" --warm-up-time 1 -d "$work/acquire.grpc" \
        -H 'content-type: application/grpc' -H 'te: trailers' \
        "http://127.0.0.1:$vss_port/vss.v1.Vss/Acquire" >"$3"
}

results="$work/results.tsv"
for level in "${LEVELS[@]}"; do
    if ((level >= 64)); then connections=$((level / 16)); else connections=1; fi
    per=$((level / connections))
    echo "== $level in flight"
    "$BENCH" -o json -e "127.0.0.1:$vss_port" -c "$connections" -i "$per" \
        -d "${SECONDS_PER_POINT}s" --warmup 1s acquire --slot 1 >"$work/vss.json"
    h2load_acquire "$connections" "$per" "$work/h2load.txt"
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
    python3 - "$level" "$work/vss.json" "$work/redis.csv" "$work/rls.json" "$work/batch.json" \
        "$work/h2load.txt" >>"$results" <<'PY'
import csv, json, re, sys
level, vss_file, redis_file, rls_file, batch_file, h2load_file = sys.argv[1:]
h = open(h2load_file).read()
# "finished in 5.00s, 71234.40 req/s, ..." and "requests: N total, N started,
# N done, N succeeded, N failed, N errored, N timeout"; "time for request:
# min max mean sd".
h_rps = float(re.search(r"finished in [^,]+, ([0-9.]+) req/s", h).group(1))
h_failed = sum(int(x) for x in re.search(r"succeeded, (\d+) failed, (\d+) errored", h).groups())
h_mean = re.search(r"time for request:\s+\S+\s+\S+\s+(\S+)", h).group(1)
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
    round(h_rps), h_failed, h_mean,
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
echo "The same unary Acquire driven by h2load (C, HTTP/2; a prebuilt gRPC request), against Redis+Lua"
python3 - "$results" <<'PY'
import sys
print("| in flight | VSS via h2load decisions/s | VSS via vss-bench | Redis+Lua decisions/s | h2load / Redis | h2load mean latency |")
print("|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    f = line.strip().split("\t")
    level, v, r, h, hfailed, hmean = f[0], int(f[1]), int(f[5]), int(f[15]), int(f[16]), f[17]
    note = f" ({hfailed} failed)" if hfailed else ""
    print(f"| {level} | {h:,}{note} | {v:,} | {r:,} | {h / max(r, 1):.2f}× | {hmean} |")
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

# ---------------------------------------------------------------------
# Broadcast fan-out: VSS vs NATS core vs Redis pub/sub.

# Slot 10 as in examples/slots.yaml but with 5 s to acknowledge, the same
# time bench/pubsub gives a NATS or Redis message to reach everyone; slot 0
# only answers the readiness probe.
cat >"$work/fanout.yaml" <<'YAML'
slots:
- {id: 0, type: token-bucket, bucketSize: 1000000, period: second, refreshRate: 1000000}
- {id: 10, type: broadcast, timeout: 5s}
YAML

# start_vss PORT: a fresh runtime with the fan-out config; sets vss_pid.
start_vss() {
    "$RUNTIME" --config "$work/fanout.yaml" --id "bench-$1" --listen "127.0.0.1:$1" --mesh-listen 127.0.0.1:0 \
        --http-listen "127.0.0.1:$(free_port)" >"$work/vss-$1.log" 2>&1 &
    vss_pid=$!
    pids+=("$vss_pid")
    for _ in $(seq 100); do
        "$BENCH" -e "127.0.0.1:$1" -c 1 -i 1 -d 100ms --warmup 0ms acquire --slot 0 >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "vss-runtime on port $1 did not start" >&2
    return 1
}
start_nats() {
    nats-server -a 127.0.0.1 -p "$1" >"$work/nats-$1.log" 2>&1 &
    nats_pid=$!
    pids+=("$nats_pid")
    for _ in $(seq 100); do
        python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null && return
        sleep 0.1
    done
    echo "nats-server on port $1 did not start" >&2
    return 1
}
start_redis() {
    redis-server --bind 127.0.0.1 --port "$1" --save "" --appendonly no --maxclients 50000 \
        --daemonize no >"$work/redis-$1.log" 2>&1 &
    redis_pid=$!
    pids+=("$redis_pid")
    for _ in $(seq 100); do
        redis-cli -p "$1" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "redis-server on port $1 did not start" >&2
    return 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

fanout_vss_port=$(free_port)
start_vss "$fanout_vss_port"
fanout_vss_pid=$vss_pid
fanout_nats_port=$(free_port)
start_nats "$fanout_nats_port"
fanout_nats_pid=$nats_pid

fanout="$work/fanout.tsv"
for subs in "${FANOUT_LEVELS[@]}"; do
    echo "== fan-out to $subs subscribers"
    # 2 subscriber processes x 8 HTTP/2 connections; NATS: 16 connections.
    "$BENCH" -o json -e "127.0.0.1:$fanout_vss_port" -c 8 -d "${SECONDS_PER_POINT}s" --warmup 1s \
        publish --slot 10 --subscribers "$subs" --processes 2 >"$work/f-vss.json" 2>"$work/f-vss.err"
    "$PUBSUB" -system nats -addr "127.0.0.1:$fanout_nats_port" -subscribers "$subs" -connections 16 \
        -d "${SECONDS_PER_POINT}s" -warmup 1s >"$work/f-nats.json"
    "$PUBSUB" -system nats -ack -addr "127.0.0.1:$fanout_nats_port" -subscribers "$subs" -connections 16 \
        -d "${SECONDS_PER_POINT}s" -warmup 1s >"$work/f-natsack.json"
    "$PUBSUB" -system redis -addr "127.0.0.1:$redis_port" -subscribers "$subs" \
        -d "${SECONDS_PER_POINT}s" -warmup 1s >"$work/f-redis.json"
    python3 - "$subs" "$work"/f-{vss,nats,natsack,redis}.json >>"$fanout" <<'PY'
import json, sys
subs, *files = sys.argv[1:]
row = [subs]
for f in files:
    j = json.load(open(f))
    l = j["latencyUs"]
    row += [j["complete"], j["incomplete"] + j["errors"], l["p50"], l["p99"], l["max"]]
print("\t".join(str(x) for x in row))
PY
done

# The fan-out servers are done: out of the way of the memory readings.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    # Out of the cleanup list: its PID may be someone else's by then.
    local kept=() pid
    for pid in "${pids[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    pids=("${kept[@]}")
}
stop_pid "$fanout_vss_pid"
stop_pid "$fanout_nats_pid"

# ---------------------------------------------------------------------
# Idle clients' memory, each server fresh: RSS before and after.

echo "== $IDLE_CLIENTS idle clients on VSS"
idle_vss_port=$(free_port)
start_vss "$idle_vss_port"
"$BENCH" -o json -e "127.0.0.1:$idle_vss_port" connections --slot 10 --clients "$IDLE_CLIENTS" \
    --processes 4 --server-pid "$vss_pid" --broadcasts "$IDLE_BROADCASTS" >"$work/idle-vss.json" 2>"$work/idle-vss.err"

# idle_other SYSTEM PORT PID OUT: bench/pubsub holds the connections while
# the server's memory is read.
idle_other() {
    local before after fifo=$work/idle-$1.fifo
    before=$(rss_kib "$3")
    mkfifo "$fifo"
    "$PUBSUB" -system "$1" -mode idle -addr "127.0.0.1:$2" -subscribers "$IDLE_CLIENTS" \
        <"$fifo" >"$work/idle-$1.out" &
    local holder=$!
    pids+=("$holder")
    exec 7>"$fifo"
    for _ in $(seq 1200); do
        grep -q '^ready' "$work/idle-$1.out" 2>/dev/null && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    # As long as vss-bench gives the runtime (fanout.rs SETTLE).
    sleep 1
    after=$(rss_kib "$3")
    exec 7>&-
    wait "$holder" || true
    grep -q '^ready' "$work/idle-$1.out" || { echo "$1: idle connections failed" >&2; return 1; }
    printf '%s\t%s\t%s\n' "$before" "$after" "$IDLE_CLIENTS" >"$4"
}
echo "== $IDLE_CLIENTS idle clients on NATS"
idle_nats_port=$(free_port)
start_nats "$idle_nats_port"
idle_other nats "$idle_nats_port" "$nats_pid" "$work/idle-nats.tsv"
echo "== $IDLE_CLIENTS idle clients on Redis"
idle_redis_port=$(free_port)
start_redis "$idle_redis_port"
idle_other redis "$idle_redis_port" "$redis_pid" "$work/idle-redis.tsv"

echo
echo "Broadcast fan-out of a 36-byte message, one publish at a time, subscribers in other processes than the server (latency in µs)"
echo "VSS: every delivery acknowledged, the publish returns when all are. NATS core and Redis pub/sub: no acknowledgement, timed to the last subscriber's receipt; 'NATS + acks': each subscriber publishes an ack, timed to the last one."
python3 - "$fanout" <<'PY'
import sys
names = ["VSS (acked)", "NATS", "NATS + acks", "Redis"]
print("| subscribers | " + " | ".join(f"{n} p50 / p99 / max" for n in names)
      + " | VSS / NATS+acks p50 | VSS / NATS+acks p99 |")
print("|---|" + "---|" * (len(names) + 2))
for line in open(sys.argv[1]):
    f = line.strip().split("\t")
    cells = []
    for i in range(len(names)):
        complete, bad, p50, p99, mx = f[1 + 5 * i: 6 + 5 * i]
        note = f" ({bad} incomplete of {int(complete) + int(bad)})" if int(bad) else ""
        cells.append(f"{int(p50):,} / {int(p99):,} / {int(mx):,}{note}")
    v50, v99 = int(f[3]), int(f[4])
    a50, a99 = int(f[13]), int(f[14])
    print(f"| {int(f[0]):,} | " + " | ".join(cells)
          + f" | {v50 / max(a50, 1):.2f}× | {v99 / max(a99, 1):.2f}× |")
PY

echo
echo "Idle clients, each on its own connection with one subscription (VSS: an open event stream), fresh servers"
python3 - "$work/idle-vss.json" "$work/idle-nats.tsv" "$work/idle-redis.tsv" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
rows = [("VSS", v["clients"], v["rssBeforeKiB"], v["rssAfterKiB"])]
for name, f in [("NATS", sys.argv[2]), ("Redis", sys.argv[3])]:
    before, after, n = open(f).read().split()
    rows.append((name, int(n), int(before), int(after)))
print("| server | clients | RSS before KiB | RSS after KiB | KiB per client |")
print("|---|---|---|---|---|")
for name, n, before, after in rows:
    print(f"| {name} | {n:,} | {before:,} | {after:,} | {max(after - before, 0) / n:.1f} |")
b = v.get("broadcast")
if b:
    l = b["latencyUs"]
    print()
    print(f"VSS broadcasts to all {v['clients']:,} idle clients: {b['complete']} of "
          f"{b['complete'] + b['incomplete'] + b['errors']} reached every client; "
          f"latency µs p50 {l['p50']:,}  p99 {l['p99']:,}  max {l['max']:,}")
PY
