"""Independent check of a pipeline run's weights.safetensors, for the tests.

Usage: pipeline_weights.py WEIGHTS.safetensors DIGITS.csv.gz LAYER:ACT ...

Reads the safetensors file by its published layout (8-byte little-endian
header length, JSON header, raw little-endian data) with numpy alone, reads
the UCI digits CSV (64 pixels 0..16, label last), scales pixels by 1/16 as
the model description does, runs the MLP given as LAYER:ACT pairs (dense
layers "<layer>.weight" in x out and "<layer>.bias"; ACT relu, tanh,
sigmoid or none) and prints {"rows": n, "correct": k}.
"""
import gzip
import json
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (hlen,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + hlen])
    base = 8 + hlen
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        assert meta["dtype"] == "F32", meta
        b, e = meta["data_offsets"]
        out[name] = np.frombuffer(blob[base + b:base + e], dtype="<f4").reshape(meta["shape"])
    return out


def main():
    weights = load_safetensors(sys.argv[1])
    with gzip.open(sys.argv[2], "rt") as f:
        rows = [line for line in f if line.strip()]
    try:
        float(rows[0].split(",")[0])
    except ValueError:
        rows = rows[1:]
    data = np.array([[float(v) for v in r.split(",")] for r in rows])
    x = data[:, :-1].astype(np.float64) / 16.0
    y = data[:, -1].astype(np.int64)
    h = x
    for spec in sys.argv[3:]:
        name, act = spec.split(":")
        h = h @ weights[name + ".weight"].astype(np.float64) + weights[name + ".bias"]
        if act == "relu":
            h = np.maximum(h, 0.0)
        elif act == "tanh":
            h = np.tanh(h)
        elif act == "sigmoid":
            h = 1.0 / (1.0 + np.exp(-h))
        else:
            assert act == "none", act
    correct = int((h.argmax(axis=1) == y).sum())
    print(json.dumps({"rows": int(len(y)), "correct": correct}))


main()
