#!/bin/sh
# Checks that every model description and script is readable text.
set -eu
n=0
for f in farm.yaml scripts/*.sh; do
    [ -r "$f" ] || { echo "unreadable: $f"; exit 1; }
    n=$((n + 1))
done
echo "lint: $n files ok"
