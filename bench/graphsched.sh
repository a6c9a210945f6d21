#!/bin/sh
# graphsched benchmark: HEFT (the peer) against CPOP, PEFT, lookahead and refine on the seeded
# random suite, Gaussian elimination and FFT graphs, and the scheduler time
# for 10,000 tasks on 16 processors.
# usage: sh bench/graphsched.sh [BUILD_DIR] [INSTANCES] [SEED]
set -eu
build=${1:-build}
cmake --build "$build" --target graphsched_bench -j 2 >/dev/null
"$build/bin/graphsched_bench" "${2:-2000}" "${3:-1}"
