"""The tracker: stage 1, then standardise + stage 2 repeated, test-time crops and temporal smoothing."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy import signal
from torch import nn

from ...learn import load as load_exported
from ...record import Cine
from ...store import CohortStore
from ...transforms import Affine2D
from .data import Track
from .geometry import MVnetError, frames_input, from_unit, stage1_geometry, standardise
from ...modelfile import record


@record
@dataclass
class MVnet:
    """A trained tracker for one view: stage-1 and stage-2 regressors; `track` runs 1, 1+2, 1+2+2 on a cine."""

    stage1: nn.Module
    stage2: nn.Module
    view: str = ""
    n_refine: int = 2
    smooth: int | None = None
    tta: float | None = None

    def __post_init__(self):
        for stage in (self.stage1, self.stage2):  # as trained (channels-last: faster CPU convolutions), so a tracker
            stage.eval().to(memory_format=torch.channels_last)  # read from its file computes exactly the same

    @torch.inference_mode()
    def _predict(self, model: nn.Module, pixels: np.ndarray, geom: Affine2D,
                 shifts: Sequence[tuple[float, float]] = ((0.0, 0.0),)) -> np.ndarray:
        """All frames of every shifted crop through one network in one batch; the points of each crop mapped back
        to original pixels, then averaged (T,2,2): frame-wise errors average out, the motion is not filtered."""
        geoms = [geom.then(shift=(geom.shift[0] + dx, geom.shift[1] + dy)) for dx, dy in shifts]
        x = torch.cat([frames_input(pixels, g) for g in geoms]).to(next(model.parameters()).device)
        u = model(x).float().cpu().numpy().reshape(len(geoms), -1, 2, 2)
        return np.mean([g.inverse_points(from_unit(ui, g.size)) for g, ui in zip(geoms, u)], axis=0)

    def track(self, pixels: np.ndarray, spacing: Sequence[float], ed: int = 0) -> dict[str, np.ndarray]:
        """(T,2,2) point tracks in original pixels after stage 1 and after each stage-2 pass ('1', '1+2', '1+2+2').

        ed: the end-diastolic frame (0 for ECG-triggered cines), which tells the standardisation where the apex is.
        Test-time crops (`tta`) run on the last pass only: earlier passes just place the next crop.
        """
        px = np.asarray(pixels, dtype=np.float32)
        if px.ndim != 3:
            raise MVnetError(f"MVnet.track: pixels must be (T,H,W), got {px.shape}")
        prev = smooth_track(self._predict(self.stage1, px, stage1_geometry(px.shape[1:])), self.smooth)
        out = {"1": prev}
        for k in range(1, self.n_refine + 1):
            shifts = tta_shifts(self.tta if k == self.n_refine else None)
            p = self._predict(self.stage2, px, standardise(prev, spacing, ed=ed), shifts)
            prev = out["1" + "+2" * k] = smooth_track(p, self.smooth)
        return out

    def track_cine(self, cine: Cine | Track) -> dict[str, np.ndarray]:
        return self.track(cine.pixels, cine.spacing, int(cine.ed or 0))


def tta_shifts(px: float | None) -> tuple[tuple[float, float], ...]:
    """Test-time crop offsets (standardised px): the crop itself and +-px along x and y (None or 0: the crop only).

    Stage 2 is trained with +-3 px translations, so such crops stay in its training distribution."""
    if not px:
        return ((0.0, 0.0),)
    d = float(px)
    return ((0.0, 0.0), (d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d))


def smooth_track(points: np.ndarray, window: int | None, polyorder: int = 2) -> np.ndarray:
    """A (T,K,2) track smoothed over time (Savitzky-Golay, cyclic: a cine is one heart cycle); None or a window
    longer than the cine leaves it as is. Frames are predicted independently, so their errors are partly
    frame-to-frame noise that the valve's smooth motion does not have."""
    p = np.asarray(points)
    if not window or window > len(p) or window <= polyorder:
        return p
    return signal.savgol_filter(p, int(window), polyorder, axis=0, mode="wrap").astype(p.dtype)


def model_path(folder: str | Path, view: str, stage: int, prefix: str = "A") -> Path:
    """Where a stage's exported Learner lives."""
    return Path(folder) / f"{prefix}_{view}_stage{stage}.model"


def predict_all(trackers: dict[str, MVnet], tests: dict[str, list[Track]]) -> dict[str, list[dict[str, np.ndarray]]]:
    """`MVnet.track` outputs for every test cine: view -> list aligned with `tests[view]`."""
    from fastprogress.fastprogress import progress_bar

    return {v: [trackers[v].track_cine(t) for t in progress_bar(ts, leave=False)] for v, ts in tests.items()}


def load(folder: str | Path, view: str, prefix: str = "A", n_refine: int = 2, smooth: int | None = None,
         tta: float | None = None) -> MVnet:
    """The tracker of one view exported by `fit` into a models folder (`{prefix}_{view}_stage{1,2}.model`)."""
    stages = [load_exported(model_path(folder, view, s, prefix), f"MVnet stage-{s} model for {view}",
                            "notebook 03") for s in (1, 2)]
    return MVnet(stages[0], stages[1], view, n_refine, smooth, tta)


def predict(tracker: MVnet, cine: Cine | Track) -> dict[str, np.ndarray]:
    """(T,2,2) point tracks of a cine after stage 1 and each stage-2 pass ('1', '1+2', '1+2+2')."""
    return tracker.track_cine(cine)


def predict_store(tracker: MVnet, store: CohortStore, ids: Sequence[str], scheduler=None, workers: int = 1,
                  progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """`predict` on every listed cine of a store, e.g. every 4CH cine of a cohort (one Dask task per cine with a
    scheduler or workers > 1)."""
    return store.map(predict, ids, args=(tracker,), scheduler=scheduler, workers=workers, desc="MV tracking",
                     progress=progress)
