"""ResNet point regressors (MVnet stages 1 and 2): a grey image -> 2K normalised point coordinates.

`arch="tiny"` is a small ResNet built from torchvision's `BasicBlock` (fast enough for CPU runs);
`resnet18/34/50` are torchvision's models with a one-channel stem and a linear head (ResNet-50 is the
paper's). No weights are downloaded unless `pretrained=True`, which fails with a clear message offline.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torchvision.models import get_model, get_model_weights
from torchvision.models.resnet import BasicBlock, conv1x1

from .weights import WeightsUnavailable, cached_state
from ..modelfile import architecture

ARCHS = ("tiny", "resnet18", "resnet34", "resnet50")


def _stage(cin: int, cout: int, n: int, stride: int) -> nn.Sequential:
    """n BasicBlocks, the first changing width/stride through a 1x1 projection."""
    down = None if stride == 1 and cin == cout else nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))
    return nn.Sequential(BasicBlock(cin, cout, stride, down), *[BasicBlock(cout, cout) for _ in range(n - 1)])


class AddCoords(nn.Module):
    """Append x and y coordinate channels in [-1, 1] (CoordConv), so absolute position is easy to regress."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        ys = torch.linspace(-1, 1, h, dtype=x.dtype, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
        xs = torch.linspace(-1, 1, w, dtype=x.dtype, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
        return torch.cat([x, xs, ys], 1)


class SoftArgmax(nn.Module):
    """Per-point heat maps -> expected (x, y) in [-1, 1] (integral regression: still 2K numbers out).

    The maps sum a 1x1 projection of the deepest features (upsampled) and of a finer skip level. In training the
    expectation runs over the whole map (differentiable everywhere); with `window` set, inference takes it over the
    (2 window + 1)^2 cells around each map's peak only (`local_mass`): the few % of probability spread over the map
    would otherwise pull every point toward the map centre (in MVnet's stage 2, toward the end-diastolic valve
    position the crop is centred on, which shrinks the displacement and anchors errors of the previous pass).
    """

    def __init__(self, cin: int, cskip: int, n_points: int, window: int | None = None):
        super().__init__()
        self.conv, self.skip = nn.Conv2d(cin, n_points, 1), nn.Conv2d(cskip, n_points, 1)
        self.window = window

    def forward(self, f: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b, _, h, w = s.shape
        logits = self.skip(s) + nn.functional.interpolate(self.conv(f), size=(h, w), mode="bilinear", align_corners=False)
        p = logits.flatten(2).softmax(-1).view(b, -1, h, w)
        r = getattr(self, "window", None)  # models exported before `window` existed have none
        if r and not self.training:
            p = local_mass(p, int(r))
        ys = torch.linspace(-1, 1, h, dtype=f.dtype, device=f.device)
        xs = torch.linspace(-1, 1, w, dtype=f.dtype, device=f.device)
        return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], -1).flatten(1)


def local_mass(p: torch.Tensor, r: int, min_mass: float = 0.5) -> torch.Tensor:
    """(B,K,H,W) probability maps kept within r cells (Chebyshev) of each map's peak and renormalised.

    A map holding less than `min_mass` there (flat or multi-modal: its peak is no better than the mean) is kept whole.
    """
    b, k, h, w = p.shape
    peak = p.flatten(2).argmax(-1)
    py, px = (peak // w)[..., None, None], (peak % w)[..., None, None]
    ys = torch.arange(h, device=p.device).view(1, 1, h, 1)
    xs = torch.arange(w, device=p.device).view(1, 1, 1, w)
    q = p * (((ys - py).abs() <= r) & ((xs - px).abs() <= r))
    m = q.sum((2, 3), keepdim=True)
    return torch.where(m >= min_mass, q / m, p)


class TinyResNet(nn.Module):
    """A narrow ResNet (stem /4, then one stage per width) with a pooled linear head (the paper's kind of head),
    a flattened linear head (keeps where features are) or a soft-argmax head; optional CoordConv input."""

    def __init__(self, n_out: int = 4, in_ch: int = 1, widths: Sequence[int] = (16, 32, 64, 128),
                 blocks: Sequence[int] = (1, 1, 1, 1), head: str = "pool", coords: bool = False,
                 window: int | None = None):
        super().__init__()
        w0 = widths[0]
        self.coords = AddCoords() if coords else nn.Identity()
        self.stem = nn.Sequential(nn.Conv2d(in_ch + 2 * coords, w0, 5, 2, 2, bias=False), nn.BatchNorm2d(w0),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        chans = [w0, *widths]
        self.body = nn.Sequential(*[_stage(chans[i], chans[i + 1], b, 1 if i == 0 else 2) for i, b in enumerate(blocks)])
        self.skip_at = 1  # the stride-8 stage feeds the soft-argmax maps
        if head == "pool":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], n_out))
        elif head == "flat":
            self.head = nn.Sequential(nn.Conv2d(widths[-1], 16, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((4, 6)),
                                      nn.Flatten(), nn.Linear(16 * 24, n_out))
        elif head == "softargmax":
            self.head = SoftArgmax(widths[-1], widths[self.skip_at], n_out // 2, window)
        else:
            raise ValueError(f"unknown head {head!r}; expected 'pool', 'flat' or 'softargmax'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.coords(x))
        if not isinstance(self.head, SoftArgmax):
            return self.head(self.body(x))
        for i, stage in enumerate(self.body):
            x = stage(x)
            if i == self.skip_at:
                skip = x
        return self.head(x, skip)


def _imagenet_state(arch: str) -> dict:
    """ImageNet weights for a torchvision ResNet, from the local torch hub cache (never downloaded)."""
    return cached_state(get_model_weights(arch).DEFAULT.url, f"ImageNet {arch}")


def torchvision_regressor(arch: str = "resnet50", n_out: int = 4, in_ch: int = 1, pretrained: bool = False) -> nn.Module:
    """A torchvision ResNet with an `in_ch`-channel stem and an `n_out` linear head (ImageNet init optional)."""
    m = get_model(arch, weights=None)
    if pretrained:
        m.load_state_dict(_imagenet_state(arch))
    old = m.conv1
    m.conv1 = nn.Conv2d(in_ch, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    if pretrained:  # grey input: sum the RGB filters (same response to a grey image)
        with torch.no_grad():
            m.conv1.weight.copy_(old.weight.sum(1, keepdim=True).repeat(1, in_ch, 1, 1) / in_ch)
    m.fc = nn.Linear(m.fc.in_features, n_out)
    return m


@architecture
def point_regressor(arch: str = "tiny", n_out: int = 4, in_ch: int = 1, pretrained: bool = False,
                    widths: Sequence[int] = (16, 32, 64, 128), blocks: Sequence[int] = (1, 1, 1, 1),
                    head: str = "pool", coords: bool = False, window: int | None = None) -> nn.Module:
    """The MVnet regressor for a profile: `tiny` (widths/blocks/head/coords/window apply) or a torchvision ResNet."""
    if arch == "tiny":
        if pretrained:
            raise WeightsUnavailable("arch='tiny' has no pretrained weights; use a torchvision ResNet for pretrained=True")
        return TinyResNet(n_out, in_ch, widths, blocks, head, coords, window)
    if arch not in ARCHS:
        raise ValueError(f"unknown regressor arch {arch!r}; expected one of {ARCHS}")
    return torchvision_regressor(arch, n_out, in_ch, pretrained)
