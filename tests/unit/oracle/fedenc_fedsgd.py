"""Independent reference for fedenc's FedSGD equivalence test (numpy).

Usage: fedenc_fedsgd.py DIR LR
DIR holds x.npy (n x d, the union of the children's training samples),
y.npy (n labels), w1.npy (d x h), b1.npy (h), wh.npy (h x c), bh.npy (c):
an encoder relu(x W1 + b1) and a linear head. Writes w1_new.npy and
b1_new.npy: the encoder after one full-batch gradient descent step on the
mean softmax cross-entropy, computed in float64.
"""
import os
import sys

import numpy as np


def main():
    d, lr = sys.argv[1], float(sys.argv[2])
    ld = lambda name: np.load(os.path.join(d, name)).astype(np.float64)
    x, y = ld("x.npy"), np.load(os.path.join(d, "y.npy")).astype(np.int64)
    w1, b1, wh, bh = ld("w1.npy"), ld("b1.npy"), ld("wh.npy"), ld("bh.npy")
    n = x.shape[0]
    z = x @ w1 + b1
    a = np.maximum(z, 0)
    logits = a @ wh + bh
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(n), y] -= 1
    dlogits = p / n
    da = dlogits @ wh.T
    dz = da * (z > 0)
    gw1 = x.T @ dz
    gb1 = dz.sum(axis=0)
    np.save(os.path.join(d, "w1_new.npy"), w1 - lr * gw1)
    np.save(os.path.join(d, "b1_new.npy"), b1 - lr * gb1)


if __name__ == "__main__":
    main()
