"""The model of flood-water-s2: terratorch's encoder-decoder, ResNet-18 encoder, UNet decoder.

No pretrained weights: nothing may be downloaded, and the 13 Sentinel-2 L1C bands do not
match the 3-band ImageNet stem anyway.
"""

from __future__ import annotations

import torch
from terratorch.models import EncoderDecoderFactory
from torch import nn

# timm's ResNet-18 returns 5 feature maps; terratorch's UNetDecoder needs one channel
# count per map (measured: 4 fails).
DECODER_CHANNELS = [256, 128, 64, 32, 16]


class LogitsOnly(nn.Module):
    """Unwraps terratorch's ``ModelOutput`` so the model maps a tensor to a tensor.

    torch.export, MLflow and the platform's tiling all need a plain tensor out.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B x K x H x W) for normalised bands (B x C x H x W)."""
        return self.model(x).output


def build_model(in_channels: int, num_classes: int) -> nn.Module:
    """A randomly initialised ResNet-18 + UNet segmentation model."""
    model = EncoderDecoderFactory().build_model(
        task="segmentation",
        backbone="timm_resnet18",
        backbone_pretrained=False,
        backbone_in_chans=in_channels,
        decoder="UNetDecoder",
        decoder_channels=DECODER_CHANNELS,
        num_classes=num_classes,
    )
    return LogitsOnly(model)
