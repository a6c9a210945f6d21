#!/usr/bin/python3
"""PyTorch peer for bench/rnnexit.sh: median forward time of nn.GRU or
nn.LSTM (one layer, input = hidden, seq-first) on the CPU, no autograd.

usage: torch_rnn.py --cell gru|lstm --hidden H [--batch 64] [--steps 100]
                    [--reps 5] [--threads 1]
Prints one line: torch <cell> hidden=H ... median_ms WALL cpu CPU (the
process's CPU time, steadier than wall time on a shared machine).
"""
import argparse
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cell", choices=["gru", "lstm"], required=True)
    ap.add_argument("--hidden", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    layer = (torch.nn.GRU if a.cell == "gru" else torch.nn.LSTM)(a.hidden, a.hidden)
    x = torch.rand(a.steps, a.batch, a.hidden) * 2 - 1
    wall, cpu = [], []
    with torch.no_grad():
        layer(x)  # warm-up
        for _ in range(a.reps):
            t0, c0 = time.perf_counter(), time.process_time()
            layer(x)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
    print("torch %s hidden=%d batch=%d steps=%d threads=%d reps=%d median_ms %.3f cpu %.3f"
          % (a.cell, a.hidden, a.batch, a.steps, torch.get_num_threads(), a.reps,
             statistics.median(wall), statistics.median(cpu)))


if __name__ == "__main__":
    main()
