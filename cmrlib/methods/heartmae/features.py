"""Frozen-encoder features: K x T views of every cine through an encoder, cached per model, grouped per subject.

An encoder here is a callable from a batch of [0, 1] clips (B, T, S, S) to (B, D) features: the MAE family's mean
token (`mae_encoder`), or a video network trained on natural videos (`kinetics_encoder`, when its weights are on
disk, read through `models.weights`). A subject's bag holds the features of all its views (SAX slices, 2CH, 4CH) x crops x clips.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastprogress.fastprogress import progress_bar

from ...models.mae_st import VideoMAE
from ...models.weights import WeightsUnavailable, cached_state
from ...utils import load_arrays, save_arrays
from .data import CineSet, inference_views
from .learner import RANDOM

Encoder = Callable[[torch.Tensor], torch.Tensor]
KINETICS = "transfer (Kinetics-400 R3D-18)"
KINETICS_MEAN, KINETICS_STD = (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)


def mae_encoder(model: VideoMAE, mean: float, std: float, pool: str = "mean") -> Encoder:
    """The MAE's frozen feature (`VideoMAE.features` with `pool`) on clips normalised as in its pretraining."""
    model.eval()
    return lambda clips: model.features(((clips - mean) / std)[:, None], pool)


def mae_steps(model: VideoMAE, mean: float, std: float) -> Encoder:
    """The MAE's token means at each time step of a clip, flattened to (B, steps x dim): one pass gives both the
    frame-resolved features and, averaged, the pooled ones."""
    model.eval()
    return lambda clips: model.step_means(((clips - mean) / std)[:, None]).flatten(1)


def kinetics_encoder(path: str | os.PathLike | None = None) -> Encoder:
    """torchvision's R3D-18 trained on Kinetics-400 (natural videos), its pooled 512 features of grey clips; the
    weights from `path` or torch's cache (`models.weights.WeightsUnavailable` when neither has them)."""
    from torchvision.models.video import R3D_18_Weights, r3d_18
    net = r3d_18(weights=None)
    net.load_state_dict(cached_state(R3D_18_Weights.KINETICS400_V1.url, "Kinetics-400 R3D-18", path))
    net.fc = torch.nn.Identity()
    net.eval()
    m = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    s = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    return lambda clips: net((clips[:, None].expand(-1, 3, -1, -1, -1) - m) / s)


def family_encoders(models: dict, random: VideoMAE, mean: float, std: float, pool: str, kinetics_weights
                    ) -> dict[str, Encoder]:
    """The encoders whose features the probes read: each MAE's, a random network's (`random`: the row named
    `learner.RANDOM`) and Kinetics-400's where its weights are here (else left out, saying why)."""
    encoders = {row: mae_encoder(m, mean, std, pool) for row, m in models.items()}
    encoders[RANDOM] = mae_encoder(random, mean, std, pool)
    try:
        encoders[KINETICS] = kinetics_encoder(kinetics_weights)
    except WeightsUnavailable as e:
        print(f"transfer row left out: {e}")
    return encoders


@torch.no_grad()
def extract(encoder: Encoder, cines: CineSet, size: int, frames: int, k: int = 3, t: int = 2, bs: int = 32,
            progress: bool = True) -> np.ndarray:
    """(N views, k * t, D) features: every cine through the k crops x t clips of `inference_views`."""
    n, load = cines.frames.shape[1], cines.frames.shape[-1]
    views = inference_views(n, load, size, frames, k, t)
    out = []
    starts = range(0, len(cines), bs)
    for i in progress_bar(starts, leave=False) if progress else starts:  # fastprogress draws a bar even hidden
        clips = [v(f, w)[0] for f, w in zip(cines.frames[i:i + bs], cines.weight[i:i + bs]) for v in views]
        x = torch.from_numpy(np.stack(clips)) / 255
        out.append(encoder(x).float().reshape(len(clips) // len(views), len(views), -1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(views), 0), np.float32)


def cached_features(path: str | Path, settings: dict, make: Callable[[], np.ndarray]) -> np.ndarray:
    """Features saved with these settings, else `make()` saved atomically (a re-run resumes here)."""
    got = load_arrays(path, settings)
    if got is not None:
        return got[0]["features"]
    feats = make()
    save_arrays(path, dict(features=feats), settings)
    return feats


def bags(features: np.ndarray, table: pd.DataFrame, subjects: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list]:
    """Per subject, all its views' features padded to the largest bag: (S, V, D) features, (S, V) mask of real
    views, and each subject's view names (`view_id#k`)."""
    per_view = features.shape[1]
    rows = {s: np.flatnonzero(table["subject"].to_numpy() == s) for s in subjects}
    v = max((len(r) * per_view for r in rows.values()), default=0)
    h = np.zeros((len(subjects), v, features.shape[-1]), np.float32)
    mask = np.zeros((len(subjects), v), bool)
    names = []
    for i, s in enumerate(subjects):
        f = features[rows[s]].reshape(-1, features.shape[-1])
        h[i, :len(f)], mask[i, :len(f)] = f, True
        names.append([f"{vid}#{j}" for vid in table["view_id"].to_numpy()[rows[s]] for j in range(per_view)])
    return h, mask, names
