"""SSLHF's networks (Zhong et al., EMBC 2021): a 3D U-Net-like restorer of corrupted cine patches (encoder: ten 3D
convolutions and four 3D max-pools; decoder: ten 3D convolutions and four 3D transposed convolutions) and the
classifier that reuses its encoder, followed by a max-pool and three fully connected layers (Kaiming init).

Input (B, 1, T, H, W): time is the first of the three convolved axes. Sizes that are not multiples of 16 (the
paper's 40 frames) are zero-padded at the end of each axis and the restorer's output cropped back. The two 3D
baselines of the paper's Table III (ResNet-50, DenseNet-121 with GroupNorm) come from MONAI."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from ..modelfile import architecture


def pad16(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad T, H and W at their ends up to multiples of 16 (the encoder's four pools)."""
    pads = [(-s) % 16 for s in x.shape[-3:]]
    return F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0])) if any(pads) else x


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3x3 convolutions with BatchNorm and ReLU (two of the encoder's or decoder's ten)."""
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
                         nn.Conv3d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class Encoder3D(nn.Module):
    """Five levels of two convolutions, a 2x2x2 max-pool between levels: (B, 1, T, H, W) -> per-level features.

    T, H and W must be divisible by 16."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 256)):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"the encoder has five levels (ten convolutions, four pools); got widths {widths}")
        self.widths = tuple(widths)
        chans = (1, *widths)
        self.levels = nn.ModuleList(_double_conv(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.pool = nn.MaxPool3d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if any(s % 16 for s in x.shape[-3:]):
            raise ValueError(f"patch size {tuple(x.shape[-3:])} (T, H, W) must be divisible by 16 (four pools)")
        feats = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


@architecture
class Restorer3D(nn.Module):
    """The restoration proxy: encoder, then four transposed convolutions up, each followed by two convolutions on
    the upsampled features joined with the encoder's (U-Net skips), a last 3x3x3 convolution and a 1x1x1 one to a
    single channel (ten decoder convolutions, as the paper's). `skips` keeps that many of the joins, the deepest
    first (4: the paper's U-Net; 0: every restored pixel passes through the deepest level, the one the
    classifier pools)."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 256), skips: int = 4):
        super().__init__()
        if not 0 <= skips <= 4:
            raise ValueError(f"skips counts the decoder's joins with the encoder, 0 to 4; got {skips}")
        self.encoder = Encoder3D(widths)
        w = self.encoder.widths
        self.joined = [i >= 4 - skips for i in reversed(range(4))]  # per decoder stage, deepest first
        self.up = nn.ModuleList(nn.ConvTranspose3d(w[i + 1], w[i], 2, stride=2) for i in reversed(range(4)))
        self.dec = nn.ModuleList(_double_conv((2 if j else 1) * w[i], w[i])
                                 for i, j in zip(reversed(range(4)), self.joined))
        self.out = nn.Sequential(nn.Conv3d(w[0], w[0], 3, padding=1, bias=False), nn.BatchNorm3d(w[0]),
                                 nn.ReLU(inplace=True), nn.Conv3d(w[0], 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[-3:]
        feats = self.encoder(pad16(x))
        y = feats[-1]
        for up, dec, skip, joined in zip(self.up, self.dec, reversed(feats[:-1]), self.joined):
            y = dec(torch.cat([up(y), skip], 1) if joined else up(y))
        return self.out(y)[..., :t, :h, :w]


@architecture
class Classifier3D(nn.Module):
    """The encoder (initialised from the restorer or at random), a global max-pool and three fully connected
    layers (Kaiming init) -> one logit per patch (HFrEF). The pooled features are standardised first (BatchNorm,
    ours, as CUSSP's head): from a restoration proxy they are non-negative and large, and unscaled they left most
    of the first layer's units off for every patch from the start, so the head could not learn."""

    def __init__(self, widths: Sequence[int] = (16, 32, 64, 128, 256), hidden: Sequence[int] = (128, 32),
                 dropout: float = 0.3):
        super().__init__()
        self.encoder = Encoder3D(widths)
        dims = (self.encoder.widths[-1], *hidden, 1)
        layers: list[nn.Module] = [nn.BatchNorm1d(dims[0])]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            lin = nn.Linear(a, b)
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
            nn.init.zeros_(lin.bias)
            layers += [lin] if i == len(dims) - 2 else [lin, nn.ReLU(inplace=True), nn.Dropout(dropout)]
        self.head = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.encoder(pad16(x))[-1]
        return self.head(torch.amax(f, dim=(2, 3, 4))).squeeze(1)

    def load_restorer(self, restorer: Restorer3D) -> "Classifier3D":
        """Start from the restoration proxy's encoder (SSLHF); without it the encoder keeps its random init (ablation A)."""
        self.encoder.load_state_dict(restorer.encoder.state_dict())
        return self


def _group_norm(groups: int) -> tuple:
    return ("group", {"num_groups": groups})


@architecture
def resnet50_3d(widen: float = 1.0, groups: int = 8) -> nn.Module:
    """MONAI's 3D ResNet-50 (bottleneck blocks 3-4-6-3) with GroupNorm, one input channel, one logit (Table III);
    `widen` scales every width (1.0: the paper's network)."""
    from monai.networks.nets import ResNet
    from monai.networks.nets.resnet import ResNetBottleneck
    return _Logit(ResNet(ResNetBottleneck, [3, 4, 6, 3], [64, 128, 256, 512], spatial_dims=3, n_input_channels=1,
                         num_classes=1, widen_factor=widen, norm=_group_norm(groups)))


@architecture
def densenet121_3d(init_features: int = 64, growth_rate: int = 32, groups: int = 8) -> nn.Module:
    """MONAI's 3D DenseNet-121 (blocks 6-12-24-16) with GroupNorm, one input channel, one logit (Table III);
    64 / 32 are the paper's widths. Every axis needs at least 32 voxels (five halvings)."""
    from monai.networks.nets import DenseNet
    return _Logit(DenseNet(3, 1, 1, init_features=init_features, growth_rate=growth_rate,
                           block_config=(6, 12, 24, 16), norm=_group_norm(groups)))


class _Logit(nn.Module):
    """A (B, 1)-output network as (B,) logits, like `Classifier3D`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
