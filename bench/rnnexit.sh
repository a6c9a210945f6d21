#!/bin/sh
# rnnexit benchmark: time against skip ratio for the skipping executor, next
# to the plain unrolled executor and PyTorch's nn.GRU / nn.LSTM, all in this
# one invocation.
#
#   sh bench/rnnexit.sh [BUILD_DIR]        (default: build)
#
# For GRU and LSTM at hidden 256 and 1024 (batch 64, 100 steps, input =
# hidden), the length condition fires for 0%, 10%, ..., 90% of the
# (object, step) pairs, in two patterns: ramp (lengths spread evenly over
# the batch, so the active rows shrink step by step) and rows (the same
# share of the objects is skipped at every step). farm's side runs twice: with the environment as set,
# and with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for that command
# alone. Every figure is a median over rounds; wall time and the process's
# CPU time are both printed (the CPU time is the steadier one on a shared
# machine). Goals checked (on the CPU-time figures):
#   at 0% fired:   skipping executor <= 1.03 x the plain unrolled executor
#   at 50% fired:  <= 0.6 x never-skip
#   never-skip:    <= PyTorch's forward (same sizes, same thread count)
# A missed goal is reported, not turned into a failing exit status.
#
# Environment: RNNEXIT_BENCH_REPS (rounds at hidden 256, default 5),
# RNNEXIT_BENCH_REPS_LARGE (hidden 1024, default 3), RNNEXIT_BENCH_THREADS
# (BLAS and torch threads on both sides, default 1: farm sets OpenBLAS's
# count, torch gets torch.set_num_threads plus OMP_NUM_THREADS and
# OPENBLAS_NUM_THREADS, since the Debian torch calls OpenBLAS, whose pool
# would otherwise use every CPU), FARM_PYTHON.
set -eu
BUILD=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILD/bench/rnnexit_bench
PY=${FARM_PYTHON:-/usr/bin/python3}
REPS=${RNNEXIT_BENCH_REPS:-5}
REPS_LARGE=${RNNEXIT_BENCH_REPS_LARGE:-3}
THREADS=${RNNEXIT_BENCH_THREADS:-1}
if [ ! -x "$BIN" ]; then
    echo "rnnexit bench: $BIN is missing; build first (make build)" >&2
    exit 1
fi
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "rnnexit bench: $PY cannot import torch (Debian: apt-get install python3-torch)" >&2
    exit 1
fi
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "rnnexit bench: $(nproc) CPUs, load average $(load) at the start;" \
    "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<unset>} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-<unset>}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
status=0
for cell in gru lstm; do
    for H in 256 1024; do
        reps=$REPS
        [ "$H" -ge 1024 ] && reps=$REPS_LARGE
        args="--cell $cell --hidden $H --batch 64 --steps 100 --reps $reps --threads $THREADS"
        echo
        echo "== $cell hidden $H, batch 64, 100 steps, $THREADS thread(s), medians of $reps =="
        # torch's own pool follows --threads; the OpenBLAS it calls keeps its
        # own pool (nproc threads by default), so pin that too.
        OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS \
            "$PY" "$HERE/rnnexit/torch_rnn.py" $args > "$TMP/torch"
        "$BIN" $args > "$TMP/set"
        env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$BIN" $args > "$TMP/unset"
        echo "-- farm, environment as set:"
        cat "$TMP/set"
        echo "-- farm, OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset:"
        cat "$TMP/unset"
        echo "-- $(cat "$TMP/torch")"
        for side in set unset; do
            awk -v side="$side" -v torchfile="$TMP/torch" '
                BEGIN {
                    getline tl < torchfile
                    n = split(tl, f, " ")
                    for (i = 1; i < n; i++) {
                        if (f[i] == "median_ms") tw = f[i + 1]
                        if (f[i] == "cpu") tc = f[i + 1]
                    }
                }
                $1 == "plain_ms" { pw = $2; pc = $4 }
                $1 == "never_skip_ms" { nw = $2; nc = $4 }
                $1 == "ramp" && $2 == "0" { z0w = $4; z0c = $7 }
                $1 == "ramp" && $2 == "50" { r5w = $4; r5c = $7 }
                $1 == "rows" && $2 == "50" { w5w = $4; w5c = $7 }
                END {
                    g1 = z0c / pc <= 1.03; g2r = r5c / nc <= 0.6; g2w = w5c / nc <= 0.6
                    g3 = nc / tc <= 1.0
                    printf "goals (%s), wall / cpu:\n", side
                    printf "  0%% fired vs plain:       %.3f / %.3f (<= 1.03) %s\n", z0w / pw, z0c / pc, g1 ? "met" : "NOT met"
                    printf "  50%% fired vs never-skip: ramp %.3f / %.3f %s, rows %.3f / %.3f %s (<= 0.6)\n", r5w / nw, r5c / nc, g2r ? "met" : "NOT met", w5w / nw, w5c / nc, g2w ? "met" : "NOT met"
                    printf "  never-skip vs torch:     %.3f / %.3f (<= 1) %s\n", nw / tw, nc / tc, g3 ? "met" : "NOT met"
                    exit (g1 && g2r && g2w && g3) ? 0 : 3
                }' "$TMP/$side" || status=3
        done
    done
done
echo
echo "rnnexit bench: load average $(load) at the end (the machine is shared: wall times" \
    "include waiting for the CPU; compare the cpu columns)"
if [ "$status" -eq 0 ]; then
    echo "rnnexit bench: every goal met (CPU time)"
else
    echo "rnnexit bench: some goals NOT met (see above)"
fi
