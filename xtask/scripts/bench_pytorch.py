#!/usr/bin/env python3
"""PyTorch's side of `cargo xtask bench curvature`: the same models, batch and threads, timed the
same way (median of --reps after --warmup), so the two tables give ratios on one machine.

    python3 xtask/scripts/bench_pytorch.py --threads 2 --model resnet18:3x32x32:w16:10 --batch 128

Rows: the gradient in evaluation mode (BatchNorm on running statistics), the training-step
gradient (BatchNorm on batch statistics, running statistics updated, as `terrain train`), and the
Hessian-vector product by double backward (PyHessian's way). Eager mode, float32 by default.
Needs torch; not used by the tests or CI.
"""

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.shortcut = nn.Sequential()
        if stride != 1 or i != o:
            self.shortcut = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class ResNet18(nn.Module):
    """terrain's `resnet18:CxHxW:wK:OUT` (the MD tree papers' ResNet-18)."""

    def __init__(self, c, k, out):
        super().__init__()
        self.conv1 = nn.Conv2d(c, k, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(k)
        layers, planes = [], k
        for p, s in [(k, 1), (2 * k, 2), (4 * k, 2), (8 * k, 2)]:
            layers += [Block(planes, p, s), Block(p, p, 1)]
            planes = p
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(8 * k, out)

    def forward(self, x):
        h = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(h, 1).flatten(1))


def build(spec):
    kind, rest = spec.split(":", 1)
    if kind == "resnet18":
        shape, width, out = rest.split(":")[:3]
        c, h, w = (int(v) for v in shape.split("x"))
        return ResNet18(c, int(width[1:]), int(out)), (c, h, w)
    if kind == "mlp":
        sizes, act = rest.split(":")[:2]
        sizes = [int(v) for v in sizes.split("-")]
        mods = []
        for i, o in zip(sizes[:-2], sizes[1:-1]):
            mods += [nn.Linear(i, o), {"relu": nn.ReLU, "tanh": nn.Tanh}[act]()]
        mods.append(nn.Linear(sizes[-2], sizes[-1]))
        return nn.Sequential(*mods), (sizes[0],)
    raise SystemExit(f"unsupported spec {spec}")


def timed(f, reps, warmup):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dtype = getattr(torch, a.dtype)
    print(f"torch {torch.__version__}, {a.threads} threads, {a.dtype}, batch {a.batch}")
    for spec in a.model or ["resnet18:3x32x32:w16:10"]:
        torch.manual_seed(0)
        model, shape = build(spec)
        model = model.to(dtype)
        x = torch.randn(a.batch, *shape, dtype=dtype)
        y = torch.arange(a.batch) % 10
        params = [p for p in model.parameters()]

        def grad_eval():
            model.eval()
            torch.autograd.grad(F.cross_entropy(model(x), y), params)

        def grad_train():
            model.train()
            torch.autograd.grad(F.cross_entropy(model(x), y), params)

        v = [torch.randn_like(p) for p in params]

        def hvp():
            model.eval()
            g = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
            torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v)), params)

        for name, f in [("gradient (eval mode)", grad_eval),
                        ("training step gradient", grad_train),
                        ("HVP (double backward)", hvp)]:
            med, lo = timed(f, a.reps, a.warmup)
            print(f"{spec:28} {name:26} median {med:9.2f} ms   min {lo:9.2f} ms")


if __name__ == "__main__":
    main()
