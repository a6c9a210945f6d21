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
#   (b) the unsplit model with 2 BLAS threads, same M and M = 1
#   (c) the same model and batch in PyTorch on the CPU, best of 1 and 2 threads
# at width 1024 and 256. farm's side runs twice: with the environment as set
# (this workplace pins OpenBLAS to an older kernel through OPENBLAS_CORETYPE
# and OPENBLAS_L2_SIZE) and with both variables unset for that command only,
# as on a user's machine. Every figure is the median of several timed runs;
# the summary prints ratios, measured bubble against (S-1)/(M+S-1), and the
# pipeline's buffer memory and peak RSS per schedule.
#
# Knobs (environment): PIPE_BENCH_REPEAT (timed runs per figure, default 5),
# PIPE_BENCH_STEPS (steps per run at width 1024, default 6; width 256 runs
# 8x as many), PIPE_BENCH_WIDTHS (default "1024 256").
set -eu

BUILD=${1:?usage: sh bench/pipeline.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
DRV=$BUILD/bin/pipeline_bench
PY=/usr/bin/python3
REPEAT=${PIPE_BENCH_REPEAT:-5}
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

# tag: variant width; then the command. Adds {"variant": ...} to the line.
record() {
    variant=$1
    shift
    line=$("$@")
    printf '{"variant": "%s", "r": %s}\n' "$variant" "$line" >>"$RES"
}

farm_side() {
    variant=$1
    shift # the rest: an env prefix, possibly empty
    for w in $WIDTHS; do
        steps=$STEPS
        [ "$w" -lt 1024 ] && steps=$((STEPS * 8))
        common="--width $w --batch 256 --steps $steps --repeat $REPEAT"
        for m in 1 2 4 8 16; do
            echo "  farm ($variant), width $w: unsplit M=$m, 1 and 2 BLAS threads" >&2
            # shellcheck disable=SC2086
            record "$variant" "$@" "$DRV" --mode unsplit --threads 1 --micro "$m" $common
            # shellcheck disable=SC2086
            record "$variant" "$@" "$DRV" --mode unsplit --threads 2 --micro "$m" $common
        done
        for m in 1 2 4 8 16; do
            for s in 1f1b gpipe; do
                echo "  farm ($variant), width $w: pipeline M=$m $s" >&2
                # shellcheck disable=SC2086
                record "$variant" "$@" "$DRV" --mode pipe --micro "$m" --schedule "$s" \
                    --split 4 $common
            done
        done
    done
}

echo "pipeline.sh: $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "pipeline.sh: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-(unset)}" \
    "OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-(unset)}" >&2
farm_side "as set" env
farm_side "unset" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
for w in $WIDTHS; do
    steps=$STEPS
    [ "$w" -lt 1024 ] && steps=$((STEPS * 8))
    for t in 1 2; do
        echo "  torch, width $w: $t thread(s)" >&2
        record "torch" "$PY" "$HERE/pipeline/torch_mlp.py" --width "$w" --batch 256 \
            --threads "$t" --steps "$steps" --repeat "$REPEAT"
    done
done
echo "pipeline.sh: load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$PY" "$HERE/pipeline/summary.py" "$RES"
