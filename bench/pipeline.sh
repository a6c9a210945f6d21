#!/bin/sh
# Pipeline-parallel training throughput, side by side with its peers.
#
# Usage: sh bench/pipeline.sh BUILD_DIR
#
# Model: 8 dense width x width ReLU layers and a width -> 10 head, batch
# 256, SGD with momentum, one fixed random batch. farm's pipeline runs it in
# 2 stages (fc1..fc4 | fc5..fc8 + head) on 2 pinned threads with
# single-threaded BLAS, for M in {1, 2, 4, 8, 16} and both schedules, against
#   (a) the unsplit model on 1 thread (farm_mlp_train_step), both with the
#       same M micro-batches accumulated (the work the pipeline does, and the
#       base of the ideal speed-up 2M/(M+1)) and with the whole batch (M = 1)
#   (b) the unsplit model with 2 BLAS threads, whole batch
#   (c) the same model and batch in PyTorch on the CPU, best of 1 and 2 threads
# at width 1024 and 256. farm's side runs twice: with the environment as set
# (this workplace pins OpenBLAS to an older kernel through OPENBLAS_CORETYPE
# and OPENBLAS_L2_SIZE) and with both variables unset for that command only,
# as on a user's machine. Every figure is the median of several timed runs,
# taken in interleaved rounds; the summary prints ratios, measured bubble
# against (S-1)/(M+S-1), and the pipeline's buffer memory and peak RSS per
# schedule.
#
# Knobs (environment): PIPE_BENCH_ROUNDS (timed runs per figure, default 5),
# PIPE_BENCH_STEPS (steps per run at width 1024, default 6; width 256 runs
# 8x as many), PIPE_BENCH_WIDTHS (default "1024 256").
set -eu

BUILD=${1:?usage: sh bench/pipeline.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
DRV=$BUILD/bin/pipeline_bench
PY=/usr/bin/python3
ROUNDS=${PIPE_BENCH_ROUNDS:-5}
STEPS=${PIPE_BENCH_STEPS:-6}
WIDTHS=${PIPE_BENCH_WIDTHS:-1024 256}

if [ ! -x "$DRV" ]; then
    cmake --build "$BUILD" --target pipeline_bench >/dev/null
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "pipeline.sh: $PY cannot import torch (install python3-torch: sh scripts/deps.sh --bench)" >&2
    exit 1
fi

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT INT TERM
RES=$OUT/results.jsonl

# record VARIANT ROUND CMD...: runs one measurement, appends its JSON line.
record() {
    variant=$1
    round=$2
    shift 2
    line=$("$@")
    printf '{"variant": "%s", "round": %s, "r": %s}\n' "$variant" "$round" "$line" >>"$RES"
}

# farm_side VARIANT ROUND WIDTH ENV...: one timing of every farm configuration,
# each pipeline right after its unsplit baseline with the same M.
farm_side() {
    variant=$1
    round=$2
    w=$3
    shift 3 # the rest: an env prefix
    steps=$STEPS
    [ "$w" -lt 1024 ] && steps=$((STEPS * 8))
    common="--width $w --batch 256 --steps $steps --repeat 1"
    echo "  round $round, width $w, farm ($variant)" >&2
    # shellcheck disable=SC2086
    record "$variant" "$round" "$@" "$DRV" --mode unsplit --threads 2 $common
    for m in 1 2 4 8 16; do
        # shellcheck disable=SC2086
        record "$variant" "$round" "$@" "$DRV" --mode unsplit --threads 1 --micro "$m" $common
        for s in 1f1b gpipe; do
            # shellcheck disable=SC2086
            record "$variant" "$round" "$@" "$DRV" --mode pipe --micro "$m" --schedule "$s" \
                --split 4 $common
        done
    done
}

echo "pipeline.sh: $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "pipeline.sh: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}" \
    "OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}" >&2
# Rounds interleave everything, so that a change in the machine's load
# during the run hits every configuration alike; the summary takes medians
# over rounds, and ratios as medians of the ratios within each round.
round=1
while [ "$round" -le "$ROUNDS" ]; do
    for w in $WIDTHS; do
        farm_side "as set" "$round" "$w" env
        farm_side "unset" "$round" "$w" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
        steps=$STEPS
        [ "$w" -lt 1024 ] && steps=$((STEPS * 8))
        for t in 1 2; do
            record "torch" "$round" "$PY" "$HERE/pipeline/torch_mlp.py" --width "$w" \
                --batch 256 --threads "$t" --steps "$steps" --repeat 1
        done
    done
    round=$((round + 1))
done
echo "pipeline.sh: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$PY" "$HERE/pipeline/summary.py" "$RES"
