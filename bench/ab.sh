#!/usr/bin/env bash
# Two builds of vss-runtime side by side, in one run on this machine:
#   bench/ab.sh A_BINARY B_BINARY
# Each round runs every workload against A, then B (alternated, so a drift
# of the machine's speed hits both), on freshly started instances with
# examples/slots.yaml, slot 1 (a bucket of 10, one key):
#   unary     vss-bench acquire, 64 in flight, one instance;
#   batched   vss-bench acquire-batch, 256 in flight, one instance;
#   forwarded vss-bench acquire, 64 in flight, on a 3-instance cluster,
#             all load on an instance that does not own slot 1.
# For each it prints the median decisions/s, the median runtime CPU per
# decision (summed over the build's instances, from /proc), and B/A, and
# the kernel's share of that CPU and the runtime's context switches per
# decision (every thread's, from /proc/PID/task/*/status).
# Fan-out and idle-client workloads (not run unless named in WORKLOADS),
# on a fresh instance whose slot 10 is a broadcast slot with a 5 s timeout,
# as bench/compare.sh runs them:
#   fanoutN   vss-bench publish of a 36-byte message to N subscribers in
#             2 other processes over 8 HTTP/2 connections each, every
#             delivery acknowledged (fanout1000, fanout5000, ...): median
#             p50 and p99 of the publish latency, runtime CPU per delivery;
#   idleN     vss-bench connections: N clients (idle15000, ...), each on
#             its own connection with an open event stream, from 4
#             processes; the runtime's RSS per client, then 5 broadcasts
#             to all of them (all must reach every client).
# Environment: WORKLOADS ("unary batched forwarded"), ROUNDS (5),
# SECONDS_PER_POINT (5), VSS_BENCH_BIN (target/release/vss-bench).
# Everything it starts, it stops (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench/ab.sh A_RUNTIME B_RUNTIME}
B=${2:?usage: bench/ab.sh A_RUNTIME B_RUNTIME}
ROUNDS=${ROUNDS:-5}
read -r -a WORKLOADS <<<"${WORKLOADS:-unary batched forwarded}"
SECONDS_PER_POINT=${SECONDS_PER_POINT:-5}
BENCH=${VSS_BENCH_BIN:-target/release/vss-bench}
[[ -x "$BENCH" ]] || { echo "no vss-bench at $BENCH: cargo build --release -p vss-bench, or set VSS_BENCH_BIN" >&2; exit 1; }

work=$(mktemp -d)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'stop_all; rm -rf "$work"' EXIT

# CPU seconds in user space and in the kernel, and context switches
# (voluntary + involuntary, summed over every thread), of the given PIDs
# so far: "user sys switches".
cpu_of() {
    python3 - "$@" <<'PY'
import glob, os, sys
tick = os.sysconf("SC_CLK_TCK")
user = system = switches = 0
for pid in sys.argv[1:]:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    user += int(fields[11])
    system += int(fields[12])
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            for line in open(status):
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        except FileNotFoundError:
            pass
print(user / tick, system / tick, switches)
PY
}

# The fan-out workloads' config: slot 10 as in examples/slots.yaml but
# with 5 s to acknowledge; slot 1 only answers the readiness probe.
cat >"$work/fanout.yaml" <<'YAML'
slots:
- {id: 1, type: token-bucket, bucketSize: 1000000, period: second, refreshRate: 1000000}
- {id: 10, type: broadcast, timeout: 5s}
YAML

# The client address of an instance of the cluster that neither owns slot
# 1 nor leads (the status lists the routing table).
not_owner() {
    local addrs=("$@") a
    for a in "${addrs[@]}"; do
        local id owner leader
        status=$(target/release/vss -e "$a" -o json status 2>/dev/null || true)
        read -r id owner leader < <(python3 -c '
import json, sys
s = json.loads(sys.argv[1])
r = s.get("routing") or {}
owner = next((x["owner"] for x in r.get("routes", []) if x.get("slot", 0) == 1), "")
print(s.get("instance", ""), owner, r.get("leader", ""))' "$status" 2>/dev/null || echo "- - -")
        if [[ -n "$owner" && "$id" != "$owner" && "$id" != "$leader" ]]; then
            echo "$a"
            return 0
        fi
    done
    echo "${addrs[0]}"
}

# point NAME LABEL BIN: one measurement; appends "NAME LABEL metrics..."
# to the results.
point() {
    local name=$1 label=$2 bin=$3 n=1 args config=examples/slots.yaml kind=acquire
    case $name in
        unary) args=(-c 4 -i 16 acquire --slot 1) ;;
        batched) args=(-c 1 -i 256 acquire-batch --slot 1) ;;
        forwarded) n=3; args=(-c 4 -i 16 acquire --slot 1) ;;
        fanout[0-9]*) kind=fanout; config=$work/fanout.yaml
            args=(-c 8 publish --slot 10 --subscribers "${name#fanout}" --processes 2) ;;
        idle[0-9]*) kind=idle; config=$work/fanout.yaml ;;
        *) echo "unknown workload $name" >&2; exit 2 ;;
    esac
    mapfile -t lines < <(start "$bin" "$n" "$config")
    # start ran in a subshell: its PIDs reach this shell through the file.
    mapfile -t ids <"$work/pids"
    pids+=("${ids[@]}")
    local clients=() line
    for line in "${lines[@]}"; do clients+=("${line%% *}"); done
    for line in "${clients[@]}"; do wait_ready "$line"; done
    local target=${clients[0]}
    if ((n > 1)); then
        sleep 3 # a table with every instance in it
        target=$(not_owner "${clients[@]}")
    fi
    local before after
    if [[ $kind == idle ]]; then
        "$BENCH" -o json -e "$target" connections --slot 10 --clients "${name#idle}" --processes 4 \
            --server-pid "${ids[0]}" --broadcasts 5 >"$work/out.json" 2>>"$work/bench.log"
        python3 - "$name" "$label" "$work/out.json" >>"$work/results.tsv" <<'PY'
import json, sys
name, label, path = sys.argv[1:]
r = json.load(open(path))
b = r["broadcast"] or {"complete": 0, "incomplete": 0, "errors": 0, "latencyUs": {"p50": 0}}
bad = b["incomplete"] + b["errors"]
print(f"{name}\t{label}\t{r['kibPerClient']:.2f}\t{b['latencyUs']['p50'] / 1000:.1f}\t{bad}")
PY
        stop_all
        return
    fi
    before=$(cpu_of "${ids[@]}")
    "$BENCH" -o json -e "$target" -d "${SECONDS_PER_POINT}s" --warmup 1s "${args[@]}" >"$work/out.json" 2>>"$work/bench.log"
    after=$(cpu_of "${ids[@]}")
    python3 - "$name" "$label" "$work/out.json" "$before" "$after" "$SECONDS_PER_POINT" "$kind" >>"$work/results.tsv" <<'PY'
import json, sys
name, label, path, before, after, secs, kind = sys.argv[1:]
r = json.load(open(path))
(u0, s0, c0), (u1, s1, c1) = ([float(x) for x in v.split()] for v in (before, after))
# The warm-up second's share is left out in proportion.
scale = float(secs) / (float(secs) + 1)
cpu = (u1 + s1 - u0 - s0) * scale
kernel = (s1 - s0) / max(u1 + s1 - u0 - s0, 1e-9)
switches = (c1 - c0) * scale
if kind == "fanout":
    l = r["latencyUs"]
    deliveries = r["deliveriesPerSecond"] * float(secs)
    bad = r["incomplete"] + r["errors"]
    print(f"{name}\t{label}\t{l['p50'] / 1000:.2f}\t{l['p99'] / 1000:.2f}\t{bad}\t{cpu / max(deliveries, 1) * 1e6:.2f}")
else:
    done = max(r["throughput"] * float(secs), 1)
    print(f"{name}\t{label}\t{r['throughput']:.0f}\t{cpu / done * 1e6:.2f}\t{r['errors']}\t{kernel:.3f}\t{switches / done:.3f}")
PY
    stop_all
}

echo "== A: $A"
echo "== B: $B"
for ((round = 1; round <= ROUNDS; round++)); do
    for name in "${WORKLOADS[@]}"; do
        point "$name" A "$A"
        point "$name" B "$B"
    done
    echo "== round $round of $ROUNDS done ($(uptime | sed 's/.*load/load/'))"
done

python3 - "$work/results.tsv" "${WORKLOADS[@]}" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
names = sys.argv[2:]
def med(name, label, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == name and r[1] == label)
def errs(name, label, col):
    return sum(int(r[col]) for r in rows if r[0] == name and r[1] == label)
def ratio(b, a):
    return b / a if a else float("nan")
print()
acquire = [n for n in names if n in ("unary", "batched", "forwarded")]
if acquire:
    print(f"{'workload':<10} {'A dec/s':>10} {'B dec/s':>10} {'B/A':>6} {'A CPU/dec':>10} {'B CPU/dec':>10} {'B/A':>6} {'kernel A/B':>11} {'switches/dec A/B':>17}  errors A/B")
    for name in acquire:
        a, b = med(name, "A", 2), med(name, "B", 2)
        ca, cb = med(name, "A", 3), med(name, "B", 3)
        ka, kb = med(name, "A", 5), med(name, "B", 5)
        sa, sb = med(name, "A", 6), med(name, "B", 6)
        print(f"{name:<10} {a:>10.0f} {b:>10.0f} {ratio(b, a):>6.2f} {ca:>8.2f}us {cb:>8.2f}us {ratio(cb, ca):>6.2f} {ka:>5.0%}/{kb:<5.0%} {sa:>8.2f}/{sb:<8.2f}  {errs(name, 'A', 4)}/{errs(name, 'B', 4)}")
fanout = [n for n in names if n.startswith("fanout")]
if fanout:
    print(f"{'workload':<12} {'A p50 ms':>9} {'B p50 ms':>9} {'B/A':>6} {'A p99 ms':>9} {'B p99 ms':>9} {'B/A':>6} {'A CPU/del':>10} {'B CPU/del':>10}  incomplete A/B")
    for name in fanout:
        a50, b50 = med(name, "A", 2), med(name, "B", 2)
        a99, b99 = med(name, "A", 3), med(name, "B", 3)
        ca, cb = med(name, "A", 5), med(name, "B", 5)
        print(f"{name:<12} {a50:>9.2f} {b50:>9.2f} {ratio(b50, a50):>6.2f} {a99:>9.2f} {b99:>9.2f} {ratio(b99, a99):>6.2f} {ca:>8.2f}us {cb:>8.2f}us  {errs(name, 'A', 4)}/{errs(name, 'B', 4)}")
idle = [n for n in names if n.startswith("idle")]
if idle:
    print(f"{'workload':<12} {'A KiB/client':>13} {'B KiB/client':>13} {'B/A':>6} {'A bcast p50 ms':>15} {'B bcast p50 ms':>15}  broadcasts short of all A/B")
    for name in idle:
        a, b = med(name, "A", 2), med(name, "B", 2)
        pa, pb = med(name, "A", 3), med(name, "B", 3)
        print(f"{name:<12} {a:>13.2f} {b:>13.2f} {ratio(b, a):>6.2f} {pa:>15.1f} {pb:>15.1f}  {errs(name, 'A', 4)}/{errs(name, 'B', 4)}")
print("(medians of", len([r for r in rows if r[1] == "A"]) // max(len(names), 1), "alternated rounds; CPU summed over the build's instances)")
PY
