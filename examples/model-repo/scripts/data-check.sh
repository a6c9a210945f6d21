#!/bin/sh
# Checks the shape of the digits data set: 1797 rows of 65 columns.
set -eu
rows=$(gzip -dc data/digits.csv.gz | wc -l)
cols=$(gzip -dc data/digits.csv.gz | head -n 1 | awk -F, '{print NF}')
echo "data-check: $rows rows, $cols columns"
[ "$rows" -eq 1797 ] && [ "$cols" -eq 65 ]
