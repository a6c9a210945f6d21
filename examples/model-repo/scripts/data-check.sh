#!/bin/sh
# Checks the digits data set with the colstats tool from the dependency
# package: 1797 rows of 65 columns, pixels in 0..16, labels in 0..9.
set -eu
stats=$(gzip -dc data/digits.csv.gz | "$FARM_DEPS_DIR/bin/colstats")
rows=$(echo "$stats" | awk -F, 'NR==2 {print $2}')
cols=$(echo "$stats" | awk 'END {print NR - 1}')
echo "data-check: $rows rows, $cols columns"
[ "$rows" -eq 1797 ] && [ "$cols" -eq 65 ]
echo "$stats" | awk -F, 'NR>1 && NR<=65 && ($5 < 0 || $6 > 16) {bad=1} END {exit bad}'
echo "$stats" | awk -F, 'NR==66 && ($5 != 0 || $6 != 9) {exit 1}'
echo "data-check: pixel and label ranges ok"
