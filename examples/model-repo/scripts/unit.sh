#!/bin/sh
# A stand-in for a repo's unit tests: checks shell arithmetic used by the
# data scripts, and reports progress as it goes.
set -eu
for i in 1 2 3 4 5; do
    [ $((i * i)) -eq $((i * i)) ]
    echo "unit: case $i passed"
done
