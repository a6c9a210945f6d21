#!/usr/bin/python3
"""Independent numpy reference for the tests of plugins/nn.

Usage: nn_oracle.py COMMAND DIR
The C test writes its inputs as .npy files into DIR; this script computes
the expected results in float64 with numpy (written from the formulas, not
from the C code) and saves them as DIR/expect_<name>.npy. Commands:

  mlp          dense(W1,b1) + relu + dense(W2,b2) + softmax cross-entropy
  act          relu/tanh/sigmoid/gelu forward and backward
  gru          one GRU cell step, forward and all gradients (PyTorch form)
  lstm         one LSTM cell step, forward and all gradients
  optim        three steps of SGD with momentum and of Adam
  rng          first outputs of splitmix64-seeded xoshiro256**
  st_read      read DIR/weights.safetensors by hand, compare with DIR/ref_*.npy
  st_write     write DIR/py.safetensors by hand from DIR/ref_*.npy
  csv_compressed  gzip/bzip2/xz CSV files for the libarchive reader
  npy_write    write numpy arrays of several dtypes for the reader test
  npy_check    check the arrays the C side wrote (c_*.npy)
"""
import json
import math
import os
import struct
import sys

import numpy as np


def load(d, name):
    return np.load(os.path.join(d, name + ".npy")).astype(np.float64)


def save(d, name, arr):
    np.save(os.path.join(d, "expect_" + name + ".npy"), np.asarray(arr, dtype=np.float64))


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


_erf = np.vectorize(math.erf)


def mlp(d):
    x, w1, b1, w2, b2 = (load(d, n) for n in ("x", "w1", "b1", "w2", "b2"))
    y = np.load(os.path.join(d, "labels.npy")).astype(np.int64)
    n = x.shape[0]
    z1 = x @ w1 + b1
    a1 = np.maximum(z1, 0.0)
    logits = a1 @ w2 + b2
    m = logits.max(axis=1, keepdims=True)
    e = np.exp(logits - m)
    p = e / e.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(n), y]).mean()
    g = p.copy()
    g[np.arange(n), y] -= 1.0
    g /= n
    dw2 = a1.T @ g
    db2 = g.sum(axis=0)
    da1 = g @ w2.T
    dz1 = da1 * (z1 > 0)
    dw1 = x.T @ dz1
    db1 = dz1.sum(axis=0)
    dx = dz1 @ w1.T
    correct = (logits.argmax(axis=1) == y).sum()
    for k, v in dict(logits=logits, loss=[loss], dw1=dw1, db1=db1, dw2=dw2, db2=db2, dx=dx,
                     correct=[correct]).items():
        save(d, k, v)


def act(d):
    x, dy = load(d, "x"), load(d, "dy")
    s = sigmoid(x)
    t = np.tanh(x)
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    out = {
        "relu": (np.maximum(x, 0), dy * (x > 0)),
        "tanh": (t, dy * (1 - t * t)),
        "sigmoid": (s, dy * s * (1 - s)),
        "gelu": (x * cdf, dy * (cdf + x * pdf)),
    }
    for k, (f, b) in out.items():
        save(d, k + "_fwd", f)
        save(d, k + "_bwd", b)
    # MSE against a target, mean over all elements (PyTorch's 'mean').
    t = load(d, "target")
    save(d, "mse_loss", [((x - t) ** 2).mean()])
    save(d, "mse_grad", 2.0 * (x - t) / x.size)


def gru(d):
    x, h, wx, wh, bx, bh, dh = (load(d, n) for n in ("x", "h", "wx", "wh", "bx", "bh", "dh"))
    H = h.shape[1]
    gx = x @ wx + bx
    gh = h @ wh + bh
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    hn = gh[:, 2 * H:]
    n = np.tanh(gx[:, 2 * H:] + r * hn)
    hnext = (1 - z) * n + z * h
    # Backward, written out by the chain rule.
    dn = dh * (1 - z)
    dz = dh * (h - n)
    dhp = dh * z
    dan = dn * (1 - n * n)
    dr = dan * hn
    dar = dr * r * (1 - r)
    daz = dz * z * (1 - z)
    dgx = np.concatenate([dar, daz, dan], axis=1)
    dgh = np.concatenate([dar, daz, dan * r], axis=1)
    save(d, "h_next", hnext)
    save(d, "dwx", x.T @ dgx)
    save(d, "dwh", h.T @ dgh)
    save(d, "dbx", dgx.sum(axis=0))
    save(d, "dbh", dgh.sum(axis=0))
    save(d, "dx", dgx @ wx.T)
    save(d, "dh_prev", dgh @ wh.T + dhp)


def lstm(d):
    x, h, c, wx, wh, b, dh, dc = (load(d, n) for n in ("x", "h", "c", "wx", "wh", "b", "dh", "dc"))
    H = h.shape[1]
    a = x @ wx + h @ wh + b
    i = sigmoid(a[:, :H])
    f = sigmoid(a[:, H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:])
    cn = f * c + i * g
    tc = np.tanh(cn)
    hn = o * tc
    dct = dc + dh * o * (1 - tc * tc)
    da = np.concatenate([dct * g * i * (1 - i), dct * c * f * (1 - f), dct * i * (1 - g * g),
                         dh * tc * o * (1 - o)], axis=1)
    save(d, "h_next", hn)
    save(d, "c_next", cn)
    save(d, "dwx", x.T @ da)
    save(d, "dwh", h.T @ da)
    save(d, "db", da.sum(axis=0))
    save(d, "dx", da @ wx.T)
    save(d, "dh_prev", da @ wh.T)
    save(d, "dc_prev", dct * f)


def optim(d):
    """Three steps of SGD with momentum and of Adam (PyTorch's update rules,
    L2 weight decay added to the gradient), in float64."""
    p0, gs, cfg = load(d, "p0"), load(d, "grads"), load(d, "config")
    shape = p0.shape
    p0 = p0.ravel()
    lr, mom, b1, b2, eps, wd = cfg.ravel()
    p, v = p0.copy(), np.zeros_like(p0)
    for g in gs:
        g = g + wd * p
        v = mom * v + g
        p = p - lr * v
    save(d, "sgd", p.reshape(shape))
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    for t, g in enumerate(gs, start=1):
        g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh = m / (1 - b1 ** t)
        vh = v / (1 - b2 ** t)
        p = p - lr * mh / (np.sqrt(vh) + eps)
    save(d, "adam", p.reshape(shape))


M64 = (1 << 64) - 1


def rng(d):
    def splitmix(state):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return state, z ^ (z >> 31)

    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & M64

    rows = []
    for seed in (0, 42, M64):
        st, s = seed, []
        for _ in range(4):
            st, v = splitmix(st)
            s.append(v)
        out = []
        for _ in range(8):
            res = (rotl((s[1] * 5) & M64, 7) * 9) & M64
            t = (s[1] << 17) & M64
            s[2] ^= s[0]
            s[3] ^= s[1]
            s[1] ^= s[2]
            s[0] ^= s[3]
            s[2] ^= t
            s[3] = rotl(s[3], 45)
            out.append(res)
        rows.append(out)
    np.save(os.path.join(d, "expect_rng.npy"), np.array(rows, dtype=np.uint64))


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", e
        b0, b1 = e["data_offsets"]
        arr = np.frombuffer(data[b0:b1], dtype="<f4").reshape(e["shape"])
        out[name] = arr
    return header.get("__metadata__"), out


def st_read(d):
    meta, tensors = read_safetensors(os.path.join(d, "weights.safetensors"))
    refs = sorted(f[4:-4] for f in os.listdir(d) if f.startswith("ref_") and f.endswith(".npy"))
    if sorted(tensors) != refs:
        sys.exit("names differ: %s vs %s" % (sorted(tensors), refs))
    for name in refs:
        ref = np.load(os.path.join(d, "ref_" + name + ".npy"))
        got = tensors[name]
        if got.shape != ref.shape or not np.array_equal(got, ref):
            sys.exit("tensor %s differs: %s vs %s" % (name, got.shape, ref.shape))
    if meta != {"format": "farm", "note": "test"}:
        sys.exit("metadata differs: %r" % (meta,))
    print("ok", len(refs))


def st_write(d):
    refs = sorted(f[4:-4] for f in os.listdir(d) if f.startswith("ref_") and f.endswith(".npy"))
    header, blobs, off = {}, [], 0
    for name in reversed(refs):  # a different order than the C writer's
        arr = np.load(os.path.join(d, "ref_" + name + ".npy")).astype("<f4")
        b = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    with open(os.path.join(d, "py.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def npy_write(d):
    base = np.arange(12, dtype=np.float64).reshape(3, 4) - 5.5
    np.save(os.path.join(d, "f8.npy"), base)
    np.save(os.path.join(d, "f4_3d.npy"), base.astype(np.float32).reshape(3, 2, 2))
    np.save(os.path.join(d, "i8.npy"), np.array([3, -1, 7, 0], dtype=np.int64))
    np.save(os.path.join(d, "i1.npy"), np.array([-128, 5, 127], dtype=np.int8))
    np.save(os.path.join(d, "u2.npy"), np.array([65535, 1], dtype=np.uint16))
    np.save(os.path.join(d, "b1.npy"), np.array([True, False, True]))
    np.save(os.path.join(d, "fortran.npy"), np.asfortranarray(base))
    np.save(os.path.join(d, "bigend.npy"), base.astype(">f8"))
    np.save(os.path.join(d, "scalar.npy"), np.float32(2.5))


def npy_check(d):
    a = np.load(os.path.join(d, "c_f4.npy"))
    assert a.dtype == np.float32 and a.shape == (2, 3), (a.dtype, a.shape)
    assert np.array_equal(a, np.array([[0.5, -1, 2], [3, 4.25, -6]], dtype=np.float32))
    b = np.load(os.path.join(d, "c_i4.npy"))
    assert b.dtype == np.int32 and list(b) == [1, -2, 3, 2147483647], b
    c = np.load(os.path.join(d, "c_f8.npy"))
    assert c.dtype == np.float64 and c.shape == (2, 2) and c[1, 1] == 1e-300, c
    e = np.load(os.path.join(d, "c_1d.npy"))
    assert e.shape == (5,), e.shape
    print("ok")


def csv_compressed(d):
    """The same small CSV through gzip, bzip2 and xz, plus a gzipped one
    with a bad field on line 3, column 3."""
    import bz2
    import gzip
    import lzma
    good = b"1,2,0\n3,4,1\n5,6,2\n"
    for name, mod in (("c.csv.gz", gzip), ("c.csv.bz2", bz2), ("c.csv.xz", lzma)):
        with open(os.path.join(d, name), "wb") as f:
            f.write(mod.compress(good))
    with open(os.path.join(d, "bad.csv.gz"), "wb") as f:
        f.write(gzip.compress(b"1,2,0\n3,4,1\n5,?,2\n"))


COMMANDS = dict(csv_compressed=csv_compressed, mlp=mlp, act=act, optim=optim, gru=gru, lstm=lstm, rng=rng, st_read=st_read,
                st_write=st_write, npy_write=npy_write, npy_check=npy_check)

if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2])
