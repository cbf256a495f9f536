"""TempReg-Net (Kong et al., MICCAI 2016): a per-frame CNN encoder, an LSTM over the frames, a per-frame regressor.

Input is a batch of variable-length cines padded with NaN frames, shape (B, T, 1, H, W). Only the real frames go
through the CNN (so padding never touches BatchNorm statistics) and the LSTM reads packed sequences (so a
bidirectional LSTM never sees padding either): the outputs on real frames do not depend on how much padding a
batch carries. Outputs on padded frames are 0.
"""
from __future__ import annotations

import torch
from fastai.layers import ConvLayer, ResBlock
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from ..modelfile import architecture

__all__ = ["frame_encoder", "TempRegNet", "tempreg_net", "valid_frames", "motion_channel"]


def frame_encoder(widths: tuple[int, ...] = (16, 32, 64, 128), blocks: tuple[int, ...] = (1, 1, 1, 1),
                  c_in: int = 1) -> nn.Sequential:
    """A small ResNet trunk (1-channel stem, one stride-2 stage per width) ending in a pooled feature vector.

    widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2) is the ResNet-18 layout (the `paper` profile)."""
    layers = [ConvLayer(c_in, widths[0], ks=5, stride=2), nn.MaxPool2d(3, stride=2, padding=1)]
    ni = widths[0]
    for i, (nf, nb) in enumerate(zip(widths, blocks)):
        for j in range(nb):
            layers.append(ResBlock(1, ni, nf, stride=2 if (j == 0 and i > 0) else 1))
            ni = nf
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def valid_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, T) mask of real frames in a NaN-padded (B, T, C, H, W) batch."""
    return ~torch.isnan(x.flatten(2)[..., 0])


def motion_channel(x: torch.Tensor, valid: torch.Tensor, floor: float = 0.01) -> torch.Tensor:
    """Each frame minus its sequence's mean frame (over real frames), scaled to unit SD per sequence: static
    anatomy cancels and what moves (the ventricles filling and emptying) stands out. Motion below `floor` times
    the sequence's own intensity SD is not amplified (a still sequence stays ~0 instead of becoming noise)."""
    w = valid[:, :, None, None, None].to(x.dtype)
    n = w.sum(1, keepdim=True).clamp(min=1) * x[0, 0].numel()
    sd = lambda a: ((a ** 2 * w).sum((1, 2, 3, 4), keepdim=True) / n).sqrt()
    d = (x - (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)) * w
    xc = (x - (x * w).sum((1, 2, 3, 4), keepdim=True) / n) * w
    return d / torch.maximum(sd(d), floor * sd(xc)).clamp(min=1e-12)


class TempRegNet(nn.Module):
    """CNN per frame -> (Bi)LSTM over time -> linear regression per frame; `lstm=False` is the CNN+Reg baseline.

    `motion` adds a second input channel, the frame minus the sequence's mean frame (see `motion_channel`);
    `cyclic` gives the LSTM a whole cycle of context on both sides of every frame (see `recur`)."""

    def __init__(self, widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1), hidden: int = 64, lstm: bool = True,
                 bidirectional: bool = False, cyclic: bool = True, motion: bool = True, dropout: float = 0.0,
                 c_in: int = 1):
        super().__init__()
        self.cyclic, self.motion = cyclic, motion
        self.encoder = frame_encoder(tuple(widths), tuple(blocks), c_in * (2 if motion else 1))
        nf = widths[-1]
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(nf, hidden, batch_first=True, bidirectional=bidirectional) if lstm else None
        self.head = nn.Linear(hidden * (2 if bidirectional else 1) if lstm else nf, 1)

    def features(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T, F) CNN features of the real frames, zeros on padding."""
        f = self.encoder(x[valid])
        out = f.new_zeros(*valid.shape, f.shape[-1])
        out[valid] = f
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:  # (B, T, H, W) -> add the channel axis
            x = x.unsqueeze(2)
        valid = valid_frames(x)
        x = torch.nan_to_num(x)
        if self.motion:
            x = torch.cat([x, motion_channel(x, valid)], 2)
        f = self.drop(self.features(x, valid))
        if self.lstm is not None:
            f = self.recur(f, valid.sum(1))
        return self.head(f).squeeze(-1) * valid

    def recur(self, f: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """LSTM over each sequence; `cyclic` reads the cycle three times over (previous, this, next) and keeps the
        middle pass, so every frame has a whole cycle of context whatever phase the cine starts at."""
        b, t, _ = f.shape
        reps = 3 if self.cyclic else 1
        idx = torch.arange(reps * t, device=f.device).expand(b, -1)
        n = lengths.to(f.device)[:, None]
        idx = torch.where(idx < reps * n, idx % n.clamp(min=1), torch.zeros_like(idx))
        tiled = f.gather(1, idx[..., None].expand(-1, -1, f.shape[-1]))
        packed = pack_padded_sequence(tiled, (lengths * reps).cpu(), batch_first=True, enforce_sorted=False)
        h, _ = pad_packed_sequence(self.lstm(packed)[0], batch_first=True, total_length=reps * t)
        if reps == 1:
            return h
        mid = (torch.arange(t, device=f.device) + n).clamp(max=reps * t - 1)  # frame i of the middle pass
        return h.gather(1, mid[..., None].expand(-1, -1, h.shape[-1]))


@architecture
def tempreg_net(kind: str = "tempreg", **kwargs) -> TempRegNet:
    """Build a model by method name: 'tempreg' (CNN+LSTM) or 'cnnreg' (CNN + per-frame regression)."""
    if kind not in ("tempreg", "cnnreg"):
        raise ValueError(f"unknown ED/ES model kind {kind!r}; expected 'tempreg' or 'cnnreg'")
    return TempRegNet(lstm=kind == "tempreg", **kwargs)
