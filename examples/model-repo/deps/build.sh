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
# A self-test of the fresh tool before the package is stored.
printf '1,2\n3,4\n' | "$FARM_DEPS_OUT/bin/colstats" >"$FARM_DEPS_OUT/selftest.csv"
grep -q '^0,2,2.000000,1.000000,1,3$' "$FARM_DEPS_OUT/selftest.csv"
echo "deps: package ready"
