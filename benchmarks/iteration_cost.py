"""SpaSEG training cost per iteration at whole-chip image sizes, before and after the fused
masked batch norm, and of a tiled warm-up step.

    python benchmarks/iteration_cost.py [--sizes 247 435 614 888 1250] [--threads 2]

A random 15-channel image with two thirds of its pixels tissue (bin20 chips of 50 k, 130 k,
260 k, 527 k and 1.05 M bins make images of about these sides), the library's network
(``spaseg.tl._model.SpaSEGNet``) and its losses. "autograd" swaps in the textbook masked
batch norm (statistics from mask-weighted sums, normalise, scale, shift, re-mask: what the
library used before), "fused" is the library's. Each row: median (and fastest) wall seconds
and median process CPU seconds of 8 iterations after 2 warm-up ones, in this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from spaseg.tl import _model  # noqa: E402
from spaseg.tl._spaseg import _tile_reconstruction_loss, _tissue  # noqa: E402

FUSED = _model.MaskedBatchNorm.forward


def autograd_forward(self, x, mask):
    """The textbook masked batch norm, left to autograd (the library before this change)."""
    n = mask.sum().clamp_min(1.0)
    mean = (x * mask).sum(dim=(0, 2, 3), keepdim=True) / n
    var = (((x - mean) * mask) ** 2).sum(dim=(0, 2, 3), keepdim=True) / n
    x = (x - mean) / torch.sqrt(var + self.eps)
    x = x * self.weight[None, :, None, None] + self.bias[None, :, None, None]
    return x * mask


def time_steps(side: int, phase: str, tile: int, n: int = 10) -> dict:
    torch.manual_seed(0)
    channels = 15
    image = torch.randn(1, channels, side, side)
    mask = (torch.rand(1, 1, side, side) < 0.67).float()
    image *= mask
    pixels = torch.nonzero(mask.flatten()).ravel()
    edges = torch.stack([torch.arange(len(pixels) - 1), torch.arange(1, len(pixels))], 1)
    net = _model.SpaSEGNet(channels, channels, channels)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    target = _tissue(image, pixels)
    walls, cpus = [], []
    for _ in range(n):
        wall, cpu = time.perf_counter(), time.process_time()
        if tile:
            loss = _tile_reconstruction_loss(net, image, mask, tile)
        else:
            out = _tissue(net(image, mask), pixels)
            if phase == "warm-up":
                loss = F.mse_loss(out, target)
            else:
                labels = out.argmax(1)
                smooth = (out[edges[:, 0]] - out[edges[:, 1]]).abs().mean()
                loss = 0.4 * F.cross_entropy(out, labels) + 0.7 * smooth
        opt.zero_grad()
        loss.backward()
        opt.step()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    walls, cpus = np.array(walls[2:]), np.array(cpus[2:])
    return dict(wall_s=np.median(walls), fastest_s=walls.min(), cpu_s=np.median(cpus))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[247, 435, 614, 888, 1250])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for side in args.sizes:
        for norm, forward in (("autograd", autograd_forward), ("fused", FUSED)):
            _model.MaskedBatchNorm.forward = forward
            for phase in ("warm-up", "self-training"):
                rows.append(
                    dict(side=side, pixels=side * side, norm=norm, step=f"{phase}, whole image")
                    | time_steps(side, phase, 0)
                )
                print(rows[-1], flush=True)
        _model.MaskedBatchNorm.forward = FUSED
        rows.append(
            dict(side=side, pixels=side * side, norm="fused", step=f"warm-up, {args.tile} tile")
            | time_steps(side, "warm-up", args.tile)
        )
    df = pd.DataFrame(rows)
    print(f"\ntorch {torch.__version__}, {args.threads} threads\n")
    print(df.round(3).to_markdown(index=False))


if __name__ == "__main__":
    main()
