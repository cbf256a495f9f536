"""CUSSP's networks (Zhang et al., arXiv 2310.04871): a ResNet-18 encoder that takes a valve-patch cine with its
frames as input channels (as the authors' code does), the Barlow Twins projector and loss, the Siamese contrastive
loss, the classifier head, and the CNN-LSTM baseline (a per-frame DenseNet with an attention gate after its first
convolution, a bidirectional LSTM and an MLP).

No weights are downloaded: `pretrained=True` reads ImageNet weights from the local torch cache or fails clearly."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import DenseNet
from torchvision.models.resnet import BasicBlock, ResNet

from .weights import cached_state
from ..modelfile import architecture

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072cd.pth"
DENSENET121_URL = "https://download.pytorch.org/models/densenet121-a639ec97.pth"


STEMS = ("authors", "torchvision")  # the first convolution and pooling of the frame encoder


def frame_encoder(frames: int, width: int = 64, pretrained: bool = False, stem: str = "authors") -> nn.Module:
    """ResNet-18 on a (B, frames, H, W) patch cine -> (B, 8 * width) features (512 at the paper's width 64).

    `width` scales every stage (64 = torchvision's ResNet-18). `stem`: "authors" (the CUSSP code's 3x3 stride-1
    first convolution and no max-pool, so a 32-px patch keeps 4 x 4 positions at the last stage) or "torchvision"
    (7x7 stride 2 and a max-pool: 1 x 1 at the last stage). ImageNet weights, when asked for, go into every layer
    but the first convolution, whose input is the cine's frames rather than RGB."""
    if stem not in STEMS:
        raise ValueError(f"stem is one of {STEMS}, got {stem!r}")
    net = WideResNet18(width)
    if pretrained:
        if width != 64:
            raise ValueError("ImageNet weights exist for the full-width ResNet-18 only (width=64)")
        state = {k: v for k, v in cached_state(RESNET18_URL, "ImageNet ResNet-18").items()
                 if not k.startswith(("conv1.", "fc."))}
        net.load_state_dict(state, strict=False)
    if stem == "authors":
        net.conv1, net.maxpool = nn.Conv2d(frames, net.conv1.out_channels, 3, 1, 1, bias=False), nn.Identity()
    else:
        net.conv1 = nn.Conv2d(frames, net.conv1.out_channels, 7, 2, 3, bias=False)
    net.fc = nn.Identity()
    net.out_features = net.inplanes
    return net


class WideResNet18(ResNet):
    """torchvision's ResNet-18 with `width` channels in its first stage, doubling per stage (64: the original)."""

    def __init__(self, width: int = 64):
        nn.Module.__init__(self)
        self._norm_layer, self.inplanes, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1, self.relu, self.maxpool = nn.BatchNorm2d(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, width * 2, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, width * 4, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, width * 8, 2, stride=2)
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(width * 8, 1)


def projector(dim_in: int, dims: Sequence[int] = (2048, 2048)) -> nn.Sequential:
    """The Barlow Twins projector: Linear + BatchNorm + ReLU on every hidden layer, a plain Linear last."""
    layers, d = [], dim_in
    for h in dims[:-1]:
        layers += [nn.Linear(d, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, dims[-1], bias=False))


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 5e-3) -> torch.Tensor:
    """Barlow Twins: drive the cross-correlation of the two views' batch-standardised embeddings to the identity
    (invariance on the diagonal, redundancy reduction off it, weighted by `lambd`)."""
    n = z1.shape[0]
    bn = lambda z: (z - z.mean(0)) / z.std(0, unbiased=False).clamp_min(1e-6)
    c = bn(z1).T @ bn(z2) / n
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


def contrastive_loss(e1: torch.Tensor, e2: torch.Tensor, different: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Hadsell-Chopra-LeCun contrastive loss on L2-normalised embeddings: pull like pairs (non-MR, non-MR)
    together, push unlike pairs (non-MR, MR) at least `margin` apart."""
    d = (F.normalize(e1, dim=1) - F.normalize(e2, dim=1)).norm(dim=1)
    y = different.float().view(-1)
    return ((1 - y) * d.pow(2) + y * F.relu(margin - d).pow(2)).mean()


@architecture
def mlp_head(dim_in: int, hidden: int = 256, out: int = 1, dropout: float = 0.2) -> nn.Sequential:
    """The 3-layer MLP classifier on top of the encoder, its input standardised (BatchNorm): self-supervised
    features come at any scale, and unscaled they left the head unable to fit the training cines."""
    return nn.Sequential(nn.BatchNorm1d(dim_in), nn.Linear(dim_in, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, hidden // 2), nn.ReLU(inplace=True), nn.Linear(hidden // 2, out))


def centre_crop(x: torch.Tensor, size: int | None) -> torch.Tensor:
    """The central size x size pixels of (..., H, W) (None or a larger size: unchanged)."""
    if size is None or size >= x.shape[-1]:
        return x
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


@architecture
class CUSSPNet(nn.Module):
    """Encoder + Barlow Twins projector + MLP head. `forward(x)` on (B, 2, F, H, W) view pairs gives (z1, z2,
    logit1, logit2) for the training losses; `classify(x)` on (B, F, H, W) gives the MR logit. The encoder sees
    the central `input_px` pixels of the patch (the authors train on the central 32 of their 64-px patches, a
    random shift of which is the augmentation's crop); None: the whole patch."""

    def __init__(self, frames: int, width: int = 64, proj_dims: Sequence[int] = (2048, 2048), hidden: int = 256,
                 pretrained: bool = False, input_px: int | None = None, stem: str = "authors"):
        super().__init__()
        self.input_px = input_px
        self.encoder = frame_encoder(frames, width, pretrained, stem)
        self.projector = projector(self.encoder.out_features, proj_dims)
        self.head = mlp_head(self.encoder.out_features, hidden)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(centre_crop(x, self.input_px))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).squeeze(1)

    def forward(self, x: torch.Tensor):
        b = x.shape[0]
        h = self.embed(x.flatten(0, 1))  # both views in one pass (BatchNorm sees the whole batch)
        z = self.projector(h).view(b, 2, -1)
        logit = self.head(h).view(b, 2)
        return z[:, 0], z[:, 1], logit[:, 0], logit[:, 1]

    def freeze_all_but_last_block(self) -> "CUSSPNet":
        """Only the encoder's last residual stage (and the head) stay trainable, as for CUSSP-SIAM."""
        for name, p in self.encoder.named_parameters():
            p.requires_grad = name.startswith("layer4.")
        return self.train(self.training)

    def train(self, mode: bool = True) -> "CUSSPNet":
        """As nn.Module.train, but frozen layers' BatchNorm statistics stay fixed (those layers stay in eval)."""
        super().train(mode)
        if mode:
            for m in self.encoder.modules():
                if isinstance(m, nn.BatchNorm2d) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self


class AttentionGate(nn.Module):
    """A spatial attention gate: a 1x1 convolution scores every position, the features are scaled by its sigmoid."""

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.score(x))


def frame_densenet(growth: int = 32, blocks: Sequence[int] = (6, 12, 24, 16), init_features: int = 64,
                   pretrained: bool = False) -> nn.Module:
    """A one-channel DenseNet frame encoder (defaults: DenseNet-121) with an attention gate after the first
    convolution; returns pooled features, `out_features` wide."""
    net = DenseNet(growth_rate=growth, block_config=tuple(blocks), num_init_features=init_features)
    if pretrained:
        if (growth, tuple(blocks), init_features) != (32, (6, 12, 24, 16), 64):
            raise ValueError("ImageNet weights exist for DenseNet-121 only (growth 32, blocks 6-12-24-16, 64)")
        state = cached_state(DENSENET121_URL, "ImageNet DenseNet-121")
        state = {_densenet_key(k): v for k, v in state.items() if not k.startswith("classifier.")}
        net.load_state_dict(state, strict=False)
    w = net.features.conv0.weight
    conv0 = nn.Conv2d(1, w.shape[0], 7, 2, 3, bias=False)
    conv0.weight.data = w.data.sum(1, keepdim=True)  # grey input: the RGB filters summed
    f = net.features
    net.features = nn.Sequential(conv0, AttentionGate(w.shape[0]), *list(f.children())[1:])
    net.out_features = net.classifier.in_features
    net.classifier = nn.Identity()
    return net


def _densenet_key(k: str) -> str:
    """torchvision's old DenseNet checkpoint names ('norm.1') -> today's module names ('norm1')."""
    import re
    return re.sub(r"(norm|relu|conv)\.((?:[12]))\.", r"\1\2.", k)


@architecture
class CNNLSTM(nn.Module):
    """Per-frame DenseNet features -> bidirectional LSTM over the frames -> MLP: (B, T, H, W) -> (B,) MR logit."""

    def __init__(self, growth: int = 32, blocks: Sequence[int] = (6, 12, 24, 16), init_features: int = 64,
                 hidden: int = 128, pretrained: bool = False):
        super().__init__()
        self.cnn = frame_densenet(growth, blocks, init_features, pretrained)
        self.lstm = nn.LSTM(self.cnn.out_features, hidden, batch_first=True, bidirectional=True)
        self.head = mlp_head(2 * hidden, hidden)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        f = self.cnn(x.reshape(b * t, 1, *x.shape[2:])).view(b, t, -1)
        out, _ = self.lstm(f)
        return self.head(out.mean(1)).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)
