#!/bin/sh
# Installs the Debian packages farm needs to build, test and benchmark, when missing.
# Idempotent; prints nothing when everything is already there.
# Usage: scripts/deps.sh [--bench]   (--bench adds the peers the benchmarks run)
set -eu

pkgs="build-essential cmake pkg-config git
libuv1-dev libgit2-dev libarchive-dev libzstd-dev libxxhash-dev libsqlite3-dev
libjansson-dev libyaml-dev libopenblas-dev libcmocka-dev libssl-dev musl-tools
python3 python3-numpy zstd"
if [ "${1:-}" = "--bench" ]; then
    pkgs="$pkgs task-spooler nq xxhash hyperfine time python3-torch"
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "deps.sh: installing:$missing" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "deps.sh: need root (or sudo) to install:$missing" >&2
        exit 1
    }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
