#!/usr/bin/env bash
# Does a cluster carry more than one instance? One instance against three,
# in one run on this machine, with the load spread evenly over every
# instance by a client that does not route (vss-bench acquire: its
# connections go round the endpoints; 66 requests in flight in all), for
# three workloads on bench/scale.yaml:
#   hot    one bucket under its limit (slot 0);
#   over   one bucket over its limit (slot 1, one key: 10 tokens, 1/s);
#   keys   10,000 keys of slot 1.
# For each: the median decisions/s, the median runtime CPU per decision
# summed over the instances (from /proc), 3-instance/1-instance ratios, and
# for three instances the largest share of the cluster's CPU one instance
# took. Rounds alternate one and three instances. On 2 cores three
# instances cannot be faster than one; docs/benchmarks.md models more
# machines from these costs.
# Usage: bench/scale.sh [RUNTIME]  (default target/release/vss-runtime)
# Environment: ROUNDS (3), SECONDS_PER_POINT (5), VSS_BENCH_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME=${1:-target/release/vss-runtime}
ROUNDS=${ROUNDS:-3}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-5}
BENCH=${VSS_BENCH_BIN:-target/release/vss-bench}
for bin in "$RUNTIME" "$BENCH"; do
    [[ -x "$bin" ]] || { echo "no $bin: cargo build --release -p vss-runtime -p vss-bench" >&2; exit 1; }
done

work=$(mktemp -d)
# shellcheck source=bench/lib.sh
source bench/lib.sh
trap 'stop_all; rm -rf "$work"' EXIT

# point WORKLOAD N: one measurement on N instances; appends a line to results.
point() {
    local name=$1 n=$2 args
    case $name in
        hot) args=(acquire --slot 0) ;;
        over) args=(acquire --slot 1) ;;
        keys) args=(acquire --slot 1 --keys 10000) ;;
    esac
    mapfile -t lines < <(start "$RUNTIME" "$n" bench/scale.yaml)
    local clients=() line
    for line in "${lines[@]}"; do clients+=("${line%% *}"); done
    for line in "${clients[@]}"; do wait_ready "$line" 0; done
    # Three instances: a routing table with every one of them in it.
    ((n > 1)) && sleep 3
    mapfile -t ids <"$work/pids"
    # Started inside start's process substitution: stop_all knows them
    # only from here.
    pids+=("${ids[@]}")
    local endpoints
    endpoints=$(IFS=,; echo "${clients[*]}")
    mapfile -t before < <(cpu_each "${ids[@]}")
    "$BENCH" -o json -e "$endpoints" -c 6 -i 11 -d "${SECONDS_PER_POINT}s" --warmup 1s "${args[@]}" >"$work/out.json"
    mapfile -t after < <(cpu_each "${ids[@]}")
    python3 - "$name" "$n" "$work/out.json" "$SECONDS_PER_POINT" "${before[*]}" "${after[*]}" >>"$work/results.tsv" <<'PY'
import json, sys
name, n, path, secs, before, after = sys.argv[1:]
r = json.load(open(path))
secs = float(secs)
# The warm-up second's CPU is left out in proportion.
used = [(float(a) - float(b)) * secs / (secs + 1) for a, b in zip(after.split(), before.split())]
done = r["throughput"] * secs
share = max(used) / max(sum(used), 1e-9)
print(f"{name}\t{n}\t{r['throughput']:.0f}\t{sum(used) / max(done, 1) * 1e6:.2f}\t{share:.2f}\t{r['errors']}")
PY
    stop_all
}

for ((round = 1; round <= ROUNDS; round++)); do
    for name in hot over keys; do
        point "$name" 1
        point "$name" 3
    done
    echo "== round $round of $ROUNDS done"
done

python3 - "$work/results.tsv" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print()
print(f"{'workload':<8} {'1 inst dec/s':>12} {'3 inst dec/s':>12} {'ratio':>6} {'1 CPU/dec':>10} {'3 CPU/dec':>10} {'ratio':>6} {'max share':>9}  errors")
for name in ["hot", "over", "keys"]:
    def med(n, col):
        return statistics.median(float(r[col]) for r in rows if r[0] == name and r[1] == n)
    errs = sum(int(r[5]) for r in rows if r[0] == name)
    one, three = med("1", 2), med("3", 2)
    c1, c3 = med("1", 3), med("3", 3)
    print(f"{name:<8} {one:>12.0f} {three:>12.0f} {three / one:>6.2f} {c1:>8.2f}us {c3:>8.2f}us {c3 / c1:>6.2f} {med('3', 4):>9.2f}  {errs}")
print("(medians of", len(rows) // 6, "alternated rounds; CPU per decision summed over the instances; max share: the busiest of three instances' part of the cluster's CPU)")
PY
