"""Independent reference for fedenc's aggregators (numpy).

Usage: fedenc_agg.py IN OUT BETA
IN holds int32 k, int32 n, k float64 sample counts, then k*n float32
parameters (row per child). OUT receives four float64 vectors of n values:
weighted FedAvg, unweighted mean, coordinate-wise median and trimmed mean
(floor(beta*k) values cut at each end, as Flower's FedTrimmedAvg does).
"""
import sys

import numpy as np


def main():
    src, dst, beta = sys.argv[1], sys.argv[2], float(sys.argv[3])
    raw = open(src, "rb").read()
    k, n = np.frombuffer(raw[:8], dtype="<i4")
    counts = np.frombuffer(raw[8:8 + 8 * k], dtype="<f8")
    w = np.frombuffer(raw[8 + 8 * k:], dtype="<f4").reshape(k, n).astype(np.float64)
    fedavg = (counts[:, None] * w).sum(axis=0) / counts.sum()
    mean = w.mean(axis=0)
    median = np.median(w, axis=0)
    cut = int(np.floor(beta * k))
    s = np.sort(w, axis=0)
    trimmed = s[cut:k - cut].mean(axis=0)
    with open(dst, "wb") as f:
        for v in (fedavg, mean, median, trimmed):
            f.write(v.astype("<f8").tobytes())


if __name__ == "__main__":
    main()
