#!/bin/sh
# Builds the example repo's dependency package into $FARM_DEPS_OUT: farm
# runs this only when deps/ (or the build command, or $CC) changed since a
# package was last built; otherwise it restores the stored package.
set -eu
: "${FARM_DEPS_OUT:?run by farm, which sets FARM_DEPS_OUT}"
cc=${CC:-cc}
mkdir -p "$FARM_DEPS_OUT/bin"
echo "deps: compiling colstats with $cc"
"$cc" -O2 -Wall -o "$FARM_DEPS_OUT/bin/colstats" deps/src/colstats.c -lm
# Self-tests of the fresh tool before the package is stored: a tiny known
# table, then 5,000,000 rows whose column means awk computes independently
# (this is what makes the build take a few seconds; it runs only on a miss).
printf '1,2\n3,4\n' | "$FARM_DEPS_OUT/bin/colstats" >"$FARM_DEPS_OUT/selftest.csv"
grep -q '^0,2,2.000000,1.000000,1,3$' "$FARM_DEPS_OUT/selftest.csv"
awk 'BEGIN { for (i = 0; i < 5000000; i++) print i % 17 "," (i * 7) % 101 }' >"$FARM_DEPS_OUT/big.csv"
got=$("$FARM_DEPS_OUT/bin/colstats" <"$FARM_DEPS_OUT/big.csv" | awk -F, 'NR > 1 {printf "%.3f ", $3}')
want=$(awk -F, '{a += $1; b += $2} END {printf "%.3f %.3f ", a / NR, b / NR}' "$FARM_DEPS_OUT/big.csv")
rm -f "$FARM_DEPS_OUT/big.csv"
[ "$got" = "$want" ] || { echo "deps: colstats self-test failed: $got vs $want"; exit 1; }
echo "deps: self-tests passed; package ready"
