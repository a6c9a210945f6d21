"""The PyTorch peer of bench/pipeline.sh: the same MLP, batch and optimizer
on the CPU, one line of JSON with the median samples/s.

Usage: torch_mlp.py --width 1024 --depth 8 --batch 256 --threads 1
                    [--steps 8] [--repeat 3] [--warmup 2]

Model: `depth` Linear(width, width) + ReLU, then Linear(width, 10); loss
cross-entropy; SGD lr 0.01 momentum 0.9; one fixed random batch, as the
farm driver uses. A step is zero_grad, forward, loss, backward, step.
"""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    layers = []
    for _ in range(a.depth):
        layers += [torch.nn.Linear(a.width, a.width), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(a.width, 10))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    x = torch.randn(a.batch, a.width)
    y = torch.randint(0, 10, (a.batch,))

    def step():
        opt.zero_grad(set_to_none=False)
        loss = lossf(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(a.warmup):
        step()
    rates = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            loss = step()
        rates.append(a.batch * a.steps / (time.perf_counter() - t0))
    print(json.dumps({"mode": "torch", "width": a.width, "batch": a.batch,
                      "threads": a.threads, "samples_per_s": statistics.median(rates),
                      "runs": [round(r, 2) for r in rates], "loss": float(loss),
                      "torch": torch.__version__}))


main()
