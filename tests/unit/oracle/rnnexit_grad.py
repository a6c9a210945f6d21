#!/usr/bin/python3
"""Independent reference for test_rnnexit_train: the loss of a one-unit
rnnexit model written out in numpy (float64) and its gradients by central
differences, so it shares no code or derivation with the C backward.

Model (one unit): [start(length), cell (gru|lstm), (head K), end, (dense O)]
  - the cell runs for object b at step t only while t < lengths[b]; skipped,
    it keeps its state (pass-on: state), and so does the head (its
    probabilities stay those of the last step it ran; zeros before);
  - a dense output node after the end runs every step.
Loss: MSE of the dense output after the last step (mean over objects, and
over outputs), or CE of the head's probabilities after the last step (mean
over objects) plus step_weight x the mean CE of the head over the
(object, step) pairs where it ran.

Usage: rnnexit_grad.py DIR. DIR holds manifest.json, x.npy (T,B,I),
lengths.npy, targets.npy or labels.npy, and one .npy per parameter named
in the manifest; writes grad_<name>.npy per parameter and loss.npy.
"""
import json
import os
import sys

import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def softmax(v):
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def loss_of(p, man, x, lengths, aux):
    kind, unit = man["kind"], man["unit"]
    T, B, _ = x.shape
    H = man["hidden"]
    W = lambda n: p[unit + "." + n]
    h = np.zeros((B, H))
    c = np.zeros((B, H))
    probs = None
    step_ce, step_n = 0.0, 0
    if man["loss"] == "ce":
        K = W("h.weight").shape[1]
        probs = np.zeros((B, K))
    for t in range(T):
        run = (t < lengths).reshape(B, 1)
        xt = x[t]
        if kind == "gru":
            gx = xt @ W("cell.wx") + W("cell.bx")
            gh = h @ W("cell.wh") + W("cell.bh")
            r = sigmoid(gx[:, :H] + gh[:, :H])
            z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
            hn = (1 - z) * n + z * h
            cn = c
        else:
            g = xt @ W("cell.wx") + h @ W("cell.wh") + W("cell.b")
            i = sigmoid(g[:, :H])
            f = sigmoid(g[:, H:2 * H])
            gg = np.tanh(g[:, 2 * H:3 * H])
            o = sigmoid(g[:, 3 * H:])
            cn = f * c + i * gg
            hn = o * np.tanh(cn)
        h = np.where(run, hn, h)
        c = np.where(run, cn, c)
        if probs is not None:
            pt = softmax(h @ W("h.weight") + W("h.bias"))
            probs = np.where(run, pt, probs)
            for b in range(B):
                if run[b, 0]:
                    step_ce += -np.log(pt[b, aux[b]])
                    step_n += 1
    if man["loss"] == "mse":
        y = h @ W("out.weight") + W("out.bias")
        return float(((y - aux) ** 2).mean(axis=1).mean())
    final = float(np.mean([-np.log(max(probs[b, aux[b]], 1e-30)) for b in range(B)]))
    sw = man["step_weight"]
    return final + (sw * step_ce / step_n if sw > 0 and step_n else 0.0)


def main():
    d = sys.argv[1]
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    x = np.load(os.path.join(d, "x.npy")).astype(np.float64)
    lengths = np.load(os.path.join(d, "lengths.npy")).astype(np.int64)
    if man["loss"] == "mse":
        aux = np.load(os.path.join(d, "targets.npy")).astype(np.float64)
    else:
        aux = np.load(os.path.join(d, "labels.npy")).astype(np.int64)
    p = {n: np.load(os.path.join(d, n + ".npy")).astype(np.float64) for n in man["tensors"]}
    np.save(os.path.join(d, "loss.npy"), np.array([loss_of(p, man, x, lengths, aux)]))
    eps = 1e-6
    for n in man["tensors"]:
        g = np.zeros_like(p[n])
        flat, gflat = p[n].reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            keep = flat[k]
            flat[k] = keep + eps
            lp = loss_of(p, man, x, lengths, aux)
            flat[k] = keep - eps
            lm = loss_of(p, man, x, lengths, aux)
            flat[k] = keep
            gflat[k] = (lp - lm) / (2 * eps)
        np.save(os.path.join(d, "grad_" + n + ".npy"), g.astype(np.float64))


if __name__ == "__main__":
    main()
