"""A spatiotemporal masked autoencoder for single-channel cines (Feichtenhofer et al. 2022), as HeartMAE uses it.

Tubelets of t x p x p voxels become tokens with separable (space + time) learnable positional embeddings; random or
tube masking keeps a fraction of tokens for the encoder (timm ViT blocks); a light decoder fills in mask tokens and
predicts, for every token, t' x p x p pixels of a fixed temporal subsample of the clip (`linspace`, so a 16-frame
clip is reconstructed as 8 frames). The loss is the squared error of per-patch normalised pixels over masked tokens,
optionally weighted pixel by pixel by (1 + W) (HeartMAE's eq. 2, W the optical-flow map of `cmrlib.methods.heartmae`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Block
from torch import nn
from ..modelfile import architecture, record

MASKINGS = ("random", "tube")


@record
@dataclass(frozen=True)
class MAESize:
    """The network's shape: the paper's ViT-B is `MAESize(224, 24, 16, 4, 768, 12, 12, 512, 4, 16, 12)`."""

    size: int = 64          # input frames are size x size
    frames: int = 16        # consecutive frames per clip
    patch: int = 8          # spatial tubelet side p
    tubelet: int = 4        # temporal tubelet length t
    dim: int = 192          # encoder width
    depth: int = 6
    heads: int = 3
    dec_dim: int = 128      # decoder width
    dec_depth: int = 2
    dec_heads: int = 4
    pred_frames: int = 8    # frames reconstructed (a linspace subsample of the clip)

    def __post_init__(self):
        if self.size % self.patch or self.frames % self.tubelet:
            raise ValueError(f"size {self.size} must be a multiple of patch {self.patch} and frames {self.frames} "
                             f"of tubelet {self.tubelet}")
        if (self.tubelet * self.pred_frames) % self.frames:
            raise ValueError(f"pred_frames {self.pred_frames} must give each token a whole number of frames "
                             f"(tubelet x pred_frames divisible by frames {self.frames})")

    @property
    def grid(self) -> tuple[int, int, int]:
        """Tokens along (time, height, width)."""
        return self.frames // self.tubelet, self.size // self.patch, self.size // self.patch

    @property
    def t_pred(self) -> int:
        """Reconstructed frames per token (t')."""
        return self.tubelet * self.pred_frames // self.frames


def target_frames(size: MAESize) -> torch.Tensor:
    """Indices of the clip's frames the decoder reconstructs (the reference code's fixed `linspace`)."""
    return torch.linspace(0, size.frames - 1, size.pred_frames).long()


def patchify(x: torch.Tensor, size: MAESize) -> torch.Tensor:
    """(B, T', H, W) single-channel frames -> (B, tokens, t' * p * p), tokens in (time, height, width) order."""
    b, t, h, w = x.shape
    p, u = size.patch, size.t_pred
    x = x.reshape(b, t // u, u, h // p, p, w // p, p)
    return x.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, (t // u) * (h // p) * (w // p), u * p * p)


def unpatchify(tokens: torch.Tensor, size: MAESize) -> torch.Tensor:
    """Inverse of `patchify`: (B, tokens, t' * p * p) -> (B, T', H, W)."""
    gt, gh, gw = size.grid
    p, u = size.patch, size.t_pred
    x = tokens.reshape(tokens.shape[0], gt, gh, gw, u, p, p)
    return x.permute(0, 1, 4, 2, 5, 3, 6).reshape(tokens.shape[0], gt * u, gh * p, gw * p)


def mask_noise(b: int, size: MAESize, masking: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-token noise whose lowest values are kept: i.i.d. per token (random) or shared across time (tube)."""
    gt, gh, gw = size.grid
    if masking == "random":
        return torch.rand(b, gt * gh * gw, generator=generator)
    if masking == "tube":
        return torch.rand(b, 1, gh * gw, generator=generator).expand(b, gt, gh * gw).reshape(b, -1)
    raise ValueError(f"masking must be one of {MASKINGS}, got {masking!r}")


def _blocks(dim: int, depth: int, heads: int) -> nn.ModuleList:
    return nn.ModuleList([Block(dim, heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
                          for _ in range(depth)])


class SeparablePos(nn.Module):
    """Learnable positional embedding as a sum of a spatial and a temporal table."""

    def __init__(self, grid: tuple[int, int, int], dim: int):
        super().__init__()
        self.space = nn.Parameter(torch.zeros(1, grid[1] * grid[2], dim))
        self.time = nn.Parameter(torch.zeros(1, grid[0], dim))
        nn.init.trunc_normal_(self.space, std=0.02)
        nn.init.trunc_normal_(self.time, std=0.02)

    def forward(self) -> torch.Tensor:
        """(1, T*H*W, dim) in (time, height, width) token order."""
        return (self.time[:, :, None, :] + self.space[:, None, :, :]).flatten(1, 2)


@architecture
class VideoMAE(nn.Module):
    """Encoder + decoder of the spatiotemporal MAE for (B, 1, T, H, W) clips."""

    def __init__(self, size: MAESize = MAESize()):
        super().__init__()
        self.size = size
        self.embed = nn.Conv3d(1, size.dim, (size.tubelet, size.patch, size.patch),
                               stride=(size.tubelet, size.patch, size.patch))
        self.pos = SeparablePos(size.grid, size.dim)
        self.blocks = _blocks(size.dim, size.depth, size.heads)
        self.norm = nn.LayerNorm(size.dim)
        self.dec_embed = nn.Linear(size.dim, size.dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, size.dec_dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.dec_pos = SeparablePos(size.grid, size.dec_dim)
        self.dec_blocks = _blocks(size.dec_dim, size.dec_depth, size.dec_heads)
        self.dec_norm = nn.LayerNorm(size.dec_dim)
        self.pred = nn.Linear(size.dec_dim, size.t_pred * size.patch ** 2)
        self.apply(_init)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> (B, N, dim) embedded tokens with positions."""
        return self.embed(x).flatten(2).transpose(1, 2) + self.pos()

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output for every token, or for the kept token indices `keep` (B, n_keep)."""
        t = self.tokens(x)
        if keep is not None:
            t = torch.gather(t, 1, keep[..., None].expand(-1, -1, t.shape[-1]))
        for blk in self.blocks:
            t = blk(t)
        return self.norm(t)

    def features(self, x: torch.Tensor, pool: str = "mean") -> torch.Tensor:
        """One vector per clip from the encoder's tokens (no masking), as used frozen downstream: their mean
        ('mean'), or with 'mean+motion' also each channel's SD over the clip's time steps of the tokens' mean at
        each step (how much the clip changes through the cycle, which a mean over time averages away)."""
        if pool not in ("mean", "mean+motion"):
            raise ValueError(f"pool is 'mean' or 'mean+motion', got {pool!r}")
        steps = self.step_means(x)
        return steps.mean(1) if pool == "mean" else torch.cat([steps.mean(1), steps.std(1)], 1)

    def step_means(self, x: torch.Tensor) -> torch.Tensor:
        """(B, time steps, dim): the encoder's tokens (no masking) averaged over space at each tubelet step, the
        frame-resolved feature (each step holds the same number of tokens, so their mean is the clip's mean)."""
        z = self.encode(x)
        return z.reshape(z.shape[0], self.size.frames // self.size.tubelet, -1, z.shape[-1]).mean(2)

    def decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Pixels of every token from the visible tokens' latents; `restore` undoes the shuffle of `split`."""
        y = self.dec_embed(latent)
        b, n = restore.shape
        y = torch.cat([y, self.mask_token.expand(b, n - y.shape[1], -1)], 1)
        y = torch.gather(y, 1, restore[..., None].expand(-1, -1, y.shape[-1])) + self.dec_pos()
        for blk in self.dec_blocks:
            y = blk(y)
        return self.pred(self.dec_norm(y))

    def forward(self, x: torch.Tensor, ratio: float = 0.9, masking: str = "random",
                generator: torch.Generator | None = None):
        """(predicted token pixels, mask with 1 on masked tokens), both (B, N, ...)."""
        b = x.shape[0]
        n = self.size.grid[0] * self.size.grid[1] * self.size.grid[2]
        n_keep = max(1, int(round(n * (1 - ratio))))
        noise = mask_noise(b, self.size, masking, generator).to(x.device)
        order = noise.argsort(1)
        restore = order.argsort(1)
        pred = self.decode(self.encode(x, order[:, :n_keep]), restore)
        mask = torch.ones(b, n, device=x.device)
        mask[:, :n_keep] = 0
        return pred, torch.gather(mask, 1, restore)


def _init(m: nn.Module):
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


TARGETS = ("dataset", "token")


def check_target(target: str) -> None:
    """A typed error for a loss target that is neither of `TARGETS`."""
    if target not in TARGETS:
        raise ValueError(f"target normalisation must be one of {TARGETS}, got {target!r}")


def targets(x: torch.Tensor, size: MAESize, target: str = "dataset") -> torch.Tensor:
    """Per-token targets: the reconstructed frames' pixels as the input holds them, centred and scaled by the
    training set's mean and SD (`dataset`: the paper's normalised pixel space), or normalised within each token
    (`token`: mae_st's norm_pix_loss, which hides each token's mean brightness from the loss)."""
    t = patchify(x[:, 0, target_frames(size).to(x.device)], size)
    check_target(target)
    if target == "dataset":
        return t
    mean, var = t.mean(-1, keepdim=True), t.var(-1, keepdim=True)
    return (t - mean) / (var + 1e-6).sqrt()


def mae_loss(pred: torch.Tensor, x: torch.Tensor, mask: torch.Tensor, size: MAESize,
             weight: torch.Tensor | None = None, target: str = "dataset") -> torch.Tensor:
    """Mean squared error over masked tokens' pixels (`targets`), each weighted by (1 + W) when a (B, H, W) map is
    given."""
    err = (pred - targets(x, size, target)) ** 2
    if weight is not None:
        w = weight[:, None].expand(-1, size.pred_frames, -1, -1)
        err = err * (1 + patchify(w, size))
    return (err.mean(-1) * mask).sum() / mask.sum()
