#!/bin/sh
# fedenc benchmark: synthetic(1,1) split over 8 local child processes, an MLP
# encoder of about one million parameters, R rounds; the peer is centralized
# training of the same model on the union of the children's data, run in the
# same invocation. Prints, as medians over REPEATS runs: held-out accuracy
# (federated with local heads, and centralized), the share of a round spent
# outside local training (communication + aggregation), rounds per second,
# and the federated/centralized wall-time ratio.
#
# Usage: sh bench/fedenc.sh [BUILD_DIR]    (env: ROUNDS, EPOCHS, REPEATS, CHILDREN)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
case $build in /*) ;; *) build=$here/$build ;; esac
run=$build/plugins/farm-fedenc-run
[ -x "$run" ] && [ -x "$build/plugins/farm-fedenc-child" ] ||
    cmake --build "$build" --target farm-fedenc-run farm-fedenc-child >/dev/null
rounds=${ROUNDS:-10}
epochs=${EPOCHS:-2}
repeats=${REPEATS:-3}
children=${CHILDREN:-8}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "fedenc benchmark: synthetic(1,1), $children children x 400 samples (20% held out),"
echo "MLP encoder 60-1024-960 (1,046,464 parameters) + local heads, $rounds rounds x $epochs epochs,"
echo "batch 32, lr 0.05, FedAvg; before each evaluation every child fits a copy of its head to the"
echo "shared encoder (200 head-only epochs on its own data). Peer: centralized training of the same"
echo "encoder with one head on the union, R x E epochs, in the same invocation."
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) at start;"
echo "this machine is shared with other sessions: timings are noisy, read the medians."
i=1
while [ "$i" -le "$repeats" ]; do
    mkdir -p "$out/$i"
    "$run" --quiet --out "$out/$i" \
        --param children="$children" --param data=synthetic --param alpha=1 --param beta=1 \
        --param samples=400 --param 'hidden=[1024,960]' --param rounds="$rounds" \
        --param epochs="$epochs" --param batch=32 --param lr=0.05 --param head_epochs=200 \
        --param eval_every=5 --param seed="$i" --param data_seed="$i" >"$out/$i/result.json"
    echo "run $i: $(cat "$out/$i/result.json")"
    i=$((i + 1))
done
/usr/bin/python3 - "$out" "$repeats" <<'PY'
import json, statistics, sys
out, n = sys.argv[1], int(sys.argv[2])
rs = [json.load(open(f"{out}/{i}/result.json")) for i in range(1, n + 1)]
med = lambda k: statistics.median(r[k] for r in rs)
fed, cen = med("fed_accuracy"), med("central_accuracy")
frac = med("median_comm_agg_fraction")
print(f"median over {n} runs:")
diffs = sorted(100 * (r["fed_accuracy"] - r["central_accuracy"]) for r in rs)
print(f"  held-out accuracy   federated {fed:.4f}   centralized {cen:.4f}   "
      f"difference {100 * (fed - cen):+.1f} points (target: within 2)")
print(f"  per-run differences " + ", ".join(f"{d:+.1f}" for d in diffs) +
      f" points; median {statistics.median(diffs):+.1f}")
print(f"  round time          {med('median_round_seconds'):.3f} s, of which communication + "
      f"aggregation {100 * frac:.1f}% (target: at most 10%)")
print(f"  rounds per second   {med('rounds_per_second'):.3f}")
print(f"  wall time           federated {med('federation_seconds'):.1f} s   centralized "
      f"{med('central_seconds'):.1f} s   ratio {med('federation_seconds') / med('central_seconds'):.2f}")
PY
