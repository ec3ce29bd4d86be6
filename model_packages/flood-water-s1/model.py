"""The model of flood-water-s1: a small U-Net in plain PyTorch (no terratorch, no timm).

SAR water detection is mostly local texture and backscatter level (calm water is dark in
both VV and VH), so a small network with three poolings is enough and trains quickly on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

WIDTHS = (16, 32, 64, 128)
"""Channels per level; the input side must be divisible by 2 ** (len(WIDTHS) - 1)."""


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """Encoder of double convolutions with max pooling, decoder with skip connections."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        previous = in_channels
        for width in WIDTHS:
            self.down.append(_block(previous, width))
            previous = width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for width in reversed(WIDTHS[:-1]):
            self.up.append(nn.ConvTranspose2d(previous, width, 2, stride=2))
            self.merge.append(_block(2 * width, width))
            previous = width
        self.head = nn.Conv2d(previous, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B x K x H x W) for normalised bands (B x C x H x W)."""
        skips = []
        for index, block in enumerate(self.down):
            x = block(x if index == 0 else self.pool(x))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1]), strict=True):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_model(in_channels: int, num_classes: int) -> nn.Module:
    """A randomly initialised small U-Net."""
    return SmallUNet(in_channels, num_classes)
