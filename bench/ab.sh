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
# decision (summed over the build's instances, from /proc), and B/A.
# Environment: ROUNDS (5), SECONDS_PER_POINT (5), VSS_BENCH_BIN
# (target/release/vss-bench). Everything it starts, it stops (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench/ab.sh A_RUNTIME B_RUNTIME}
B=${2:?usage: bench/ab.sh A_RUNTIME B_RUNTIME}
ROUNDS=${ROUNDS:-5}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-5}
BENCH=${VSS_BENCH_BIN:-target/release/vss-bench}
[[ -x "$BENCH" ]] || { echo "no vss-bench at $BENCH: cargo build --release -p vss-bench, or set VSS_BENCH_BIN" >&2; exit 1; }

work=$(mktemp -d)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'stop_all; rm -rf "$work"' EXIT

# CPU seconds (user + system) of the given PIDs so far, summed.
cpu_of() { cpu_each "$@" | python3 -c 'import sys; print(sum(float(l) for l in sys.stdin))'; }

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

# point NAME BIN: one measurement; appends "NAME build dps cpu_us" to results.
point() {
    local name=$1 label=$2 bin=$3 n=1 args
    case $name in
        unary) args=(-c 4 -i 16 acquire --slot 1) ;;
        batched) args=(-c 1 -i 256 acquire-batch --slot 1) ;;
        forwarded) n=3; args=(-c 4 -i 16 acquire --slot 1) ;;
    esac
    mapfile -t lines < <(start "$bin" "$n" examples/slots.yaml)
    local clients=() line
    for line in "${lines[@]}"; do clients+=("${line%% *}"); done
    for line in "${clients[@]}"; do wait_ready "$line"; done
    local target=${clients[0]}
    if ((n > 1)); then
        sleep 3 # a table with every instance in it
        target=$(not_owner "${clients[@]}")
    fi
    mapfile -t ids <"$work/pids"
    local before after
    before=$(cpu_of "${ids[@]}")
    "$BENCH" -o json -e "$target" -d "${SECONDS_PER_POINT}s" --warmup 1s "${args[@]}" >"$work/out.json"
    after=$(cpu_of "${ids[@]}")
    python3 - "$name" "$label" "$work/out.json" "$before" "$after" "$SECONDS_PER_POINT" >>"$work/results.tsv" <<'PY'
import json, sys
name, label, path, before, after, secs = sys.argv[1:]
r = json.load(open(path))
done = r["throughput"] * float(secs)
# The warm-up second's CPU is left out in proportion.
cpu = (float(after) - float(before)) * float(secs) / (float(secs) + 1)
print(f"{name}\t{label}\t{r['throughput']:.0f}\t{cpu / max(done, 1) * 1e6:.2f}\t{r['errors']}")
PY
    stop_all
}

echo "== A: $A"
echo "== B: $B"
for ((round = 1; round <= ROUNDS; round++)); do
    for name in unary batched forwarded; do
        point "$name" A "$A"
        point "$name" B "$B"
    done
    echo "== round $round of $ROUNDS done"
done

python3 - "$work/results.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print()
print(f"{'workload':<10} {'A dec/s':>10} {'B dec/s':>10} {'B/A':>6} {'A CPU/dec':>10} {'B CPU/dec':>10} {'B/A':>6}  errors A/B")
for name in ["unary", "batched", "forwarded"]:
    def med(label, col):
        return statistics.median(float(r[col]) for r in rows if r[0] == name and r[1] == label)
    def errs(label):
        return sum(int(r[4]) for r in rows if r[0] == name and r[1] == label)
    a, b = med("A", 2), med("B", 2)
    ca, cb = med("A", 3), med("B", 3)
    print(f"{name:<10} {a:>10.0f} {b:>10.0f} {b / a:>6.2f} {ca:>8.2f}us {cb:>8.2f}us {cb / ca:>6.2f}  {errs('A')}/{errs('B')}")
print("(medians of", len(rows) // 6, "alternated rounds; CPU per decision summed over the build's instances)")
PY
