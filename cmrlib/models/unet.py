"""TernausNet-style U-Net: a torchvision VGG11 encoder and a transposed-convolution decoder with skips.

`width` scales every channel count (1.0 = TernausNet11: encoder 64..512, decoder 32 filters),
so CPU profiles can train a small copy of the same architecture.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.models import vgg

from .weights import WeightsUnavailable, cached_state
from ..modelfile import architecture

__all__ = ["UNet11", "WeightsUnavailable", "unet11", "vgg11_encoder"]


def _ch(c: int, width: float) -> int:
    return max(8, int(round(c * width)))


def _cached_weights(bn: bool) -> dict[str, torch.Tensor]:
    """torchvision's VGG11 ImageNet weights from the local torch hub cache, never downloaded."""
    w = (vgg.VGG11_BN_Weights if bn else vgg.VGG11_Weights).IMAGENET1K_V1
    return cached_state(w.url, f"ImageNet VGG11{'_bn' if bn else ''}")


def vgg11_encoder(width: float = 1.0, bn: bool = True, in_ch: int = 1, pretrained: bool = False) -> nn.Sequential:
    """torchvision's VGG11 feature stack (channels scaled by `width`) with an `in_ch`-channel stem."""
    if pretrained and width != 1.0:
        raise ValueError(f"pretrained VGG11 weights need width=1.0, got width={width}")
    feats = vgg.make_layers([v if v == "M" else _ch(v, width) for v in vgg.cfgs["A"]], batch_norm=bn)
    if pretrained:
        sd = {k[len("features."):]: v for k, v in _cached_weights(bn).items() if k.startswith("features.")}
        feats.load_state_dict(sd)
    stem = feats[0]
    if in_ch != stem.in_channels:  # grey-scale input: sum the RGB filters (fastai's trick), keeps pretrained responses
        new = nn.Conv2d(in_ch, stem.out_channels, stem.kernel_size, stem.stride, stem.padding)
        with torch.no_grad():
            new.weight.copy_(stem.weight.sum(1, keepdim=True).repeat(1, in_ch, 1, 1) / in_ch)
            new.bias.copy_(stem.bias)
        feats[0] = new
    return feats


def _stages(feats: nn.Sequential) -> nn.ModuleList:
    """Split the VGG stack at its max-pools: one stage per resolution."""
    stages, cur = [], []
    for m in feats:
        if isinstance(m, nn.MaxPool2d):
            stages.append(nn.Sequential(*cur))
            cur = []
        else:
            cur.append(m)
    return nn.ModuleList(stages)


def _out_ch(stage: nn.Sequential) -> int:
    return [m for m in stage if isinstance(m, nn.Conv2d)][-1].out_channels


class ConvRelu(nn.Sequential):
    """3x3 convolution, optional batch norm, ReLU."""

    def __init__(self, ci: int, co: int, bn: bool = True):
        super().__init__(nn.Conv2d(ci, co, 3, padding=1, bias=not bn), *([nn.BatchNorm2d(co)] if bn else []),
                         nn.ReLU(inplace=True))


class DecoderBlock(nn.Sequential):
    """TernausNet decoder block: conv-relu, then a stride-2 transposed convolution doubling the resolution."""

    def __init__(self, ci: int, cm: int, co: int, bn: bool = True):
        super().__init__(ConvRelu(ci, cm, bn), nn.ConvTranspose2d(cm, co, 3, stride=2, padding=1, output_padding=1),
                         *([nn.BatchNorm2d(co)] if bn else []), nn.ReLU(inplace=True))


class UNet11(nn.Module):
    """TernausNet11 for `n_classes` logits; input sides must be multiples of 32.

    `geometry` (set by the learner factory) travels with the module so inference resamples the
    way training did.
    """

    def __init__(self, n_classes: int = 6, width: float = 1.0, in_ch: int = 1, bn: bool = True,
                 pretrained: bool = False):
        super().__init__()
        self.stages = _stages(vgg11_encoder(width, bn, in_ch, pretrained))
        self.pool = nn.MaxPool2d(2, 2)
        e = [_out_ch(s) for s in self.stages]  # 64, 128, 256, 512, 512 at width 1
        nf = _ch(32, width)
        self.center = DecoderBlock(e[4], nf * 16, nf * 8, bn)
        self.dec5 = DecoderBlock(nf * 8 + e[4], nf * 16, nf * 8, bn)
        self.dec4 = DecoderBlock(nf * 8 + e[3], nf * 16, nf * 4, bn)
        self.dec3 = DecoderBlock(nf * 4 + e[2], nf * 8, nf * 2, bn)
        self.dec2 = DecoderBlock(nf * 2 + e[1], nf * 4, nf, bn)
        self.dec1 = ConvRelu(nf + e[0], nf, bn)
        self.final = nn.Conv2d(nf, n_classes, 1)
        self.n_classes, self.width, self.geometry = n_classes, width, None
        self.hparams: dict[str, Any] = dict(n_classes=n_classes, width=width, in_ch=in_ch, bn=bn, pretrained=pretrained)
        self.to(memory_format=torch.channels_last)  # a one-thread CPU step 15 % faster (bench/bench_seg_train.py)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's stage outputs, finest first: the skips the decoder reads, and frozen features."""
        skips = []
        for i, s in enumerate(self.stages):
            x = s(x if i == 0 else self.pool(x))
            skips.append(x)
        return skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"UNet11 input sides must be multiples of 32, got {tuple(x.shape[-2:])}")
        kind = type(x)  # fastai's tensor types dispatch every operation in Python: the network sees a plain tensor
        skips = self.encode(x.as_subclass(torch.Tensor).contiguous(memory_format=torch.channels_last))
        x = self.center(self.pool(skips[-1]))
        for dec, skip in zip((self.dec5, self.dec4, self.dec3, self.dec2, self.dec1), reversed(skips)):
            x = dec(torch.cat([x, skip], 1))
        out = self.final(x)
        return out if kind is torch.Tensor else out.as_subclass(kind)


@architecture
def unet11(n_classes: int = 6, width: float = 1.0, pretrained: bool = False, bn: bool = True, in_ch: int = 1) -> UNet11:
    """A TernausNet11 U-Net; `pretrained=True` loads cached ImageNet VGG11 weights or raises `WeightsUnavailable`."""
    return UNet11(n_classes=n_classes, width=width, in_ch=in_ch, bn=bn, pretrained=pretrained)
