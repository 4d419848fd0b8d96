"""The SpaSEG network: two 3x3 conv blocks and a 1x1 head, normalised over tissue pixels only."""

from __future__ import annotations

import torch
from torch import nn


def _channel_sums(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per channel, the sum over batch and pixels of ``x * y`` (``y`` may have one channel):
    a batched dot product, so ``x * y`` itself is never written."""
    if y.shape[1] == 1:
        return torch.einsum("nchw,nhw->c", x, y[:, 0])
    return torch.einsum("nchw,nchw->c", x, y)


class _MaskedBatchNormFn(torch.autograd.Function):
    """Batch norm over the tissue pixels, with a hand-written backward.

    Autograd of the textbook expression makes ~11 passes over the activations forward and more
    backward, the bulk of a training iteration on CPU at whole-chip size. Here: forward
    ``y = (x * scale + shift) * mask`` with the statistics from two reductions; backward the
    closed form ``dx = mask * (a * g + b * x + c)`` with ``g = dy * mask`` and per-channel
    ``a, b, c`` from two more reductions.
    """

    @staticmethod
    def forward(ctx, x, mask, weight, bias, eps):  # noqa: D102
        n = mask.sum().clamp_min(1.0)
        mean = _channel_sums(x, mask) / n
        xm = x * mask
        # E[x^2] - mean^2 in float64 (per-channel scalars only): no cancellation issues.
        var = (_channel_sums(xm, x).double() / n - mean.double() ** 2).clamp_min(0.0)
        rstd = torch.rsqrt(var + eps).to(x.dtype)
        scale = weight * rstd
        shift = bias - mean * scale
        out = torch.addcmul(shift[None, :, None, None], x, scale[None, :, None, None])
        out.mul_(mask)
        ctx.save_for_backward(x, mask, weight, mean, rstd, n)
        return out

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        x, mask, weight, mean, rstd, n = ctx.saved_tensors
        g = dy * mask
        sum_g = g.sum((0, 2, 3))
        # sum over tissue of g * xhat, with xhat = (x - mean) * rstd
        sum_g_xhat = (_channel_sums(g, x) - mean * sum_g) * rstd
        grad_weight, grad_bias = sum_g_xhat, sum_g
        grad_x = None
        if ctx.needs_input_grad[0]:
            a = weight * rstd
            b = -a * rstd * sum_g_xhat / n
            c = -a * sum_g / n - b * mean
            grad_x = torch.addcmul(c[None, :, None, None], g, a[None, :, None, None])
            grad_x.addcmul_(x, b[None, :, None, None]).mul_(mask)
        return grad_x, None, grad_weight, grad_bias, None


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
        return _MaskedBatchNormFn.apply(x, mask, self.weight, self.bias, self.eps)


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
