"""The SpaSEG network: two 3x3 conv blocks and a 1x1 head, normalised over tissue pixels only."""

from __future__ import annotations

import torch
from torch import nn


class MaskedBatchNorm(nn.Module):
    """Batch normalisation whose statistics come from tissue pixels alone.

    The whole section is one batch, so the statistics are always those of the current image
    (there are no running averages to drift). Background pixels are set back to zero, so for
    the next convolution they look like the zero padding at the image border.
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # x: (N, C, H, W); mask: (N, 1, H, W) float with 1 on tissue.
        n = mask.sum().clamp_min(1.0)
        mean = (x * mask).sum(dim=(0, 2, 3), keepdim=True) / n
        var = (((x - mean) * mask) ** 2).sum(dim=(0, 2, 3), keepdim=True) / n
        x = (x - mean) / torch.sqrt(var + self.eps)
        x = x * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return x * mask


class SpaSEGNet(nn.Module):
    """Norm -> [conv3x3, norm, LeakyReLU] x 2 -> conv1x1 -> norm.

    Parameters
    ----------
    in_channels
        Number of principal components (image channels).
    hidden
        Channels of the convolutions.
    n_out
        Channels of the output (the largest number of labels the argmax can produce). The
        warm-up reconstructs the input, so it must equal ``in_channels``.
    """

    def __init__(self, in_channels: int, hidden: int, n_out: int):
        super().__init__()
        self.norm_in = MaskedBatchNorm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.norm1 = MaskedBatchNorm(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.norm2 = MaskedBatchNorm(hidden)
        self.head = nn.Conv2d(hidden, n_out, 1)
        self.norm_out = MaskedBatchNorm(n_out)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(x, mask)
        x = self.act(self.norm1(self.conv1(x), mask))
        x = self.act(self.norm2(self.conv2(x), mask))
        return self.norm_out(self.head(x), mask)
