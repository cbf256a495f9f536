"""MVnet: mitral-valve insertion-point tracking in 2CH/4CH cines (stage 1 -> standardise -> stage 2, iterated).

Pipeline per view (Gonzales et al., JCMR 2021):
  stage 1   every frame fitted into 160x160 (`fit_affine`), median/IQR-normalised, a ResNet regresses 2 points;
  standard  from the stage-1 points: resample to 0.75 mm, rotate so the valve is horizontal with the anterior
            (2CH) / lateral (4CH) point on the left and the apex down, crop 118x162 around the valve centre;
            the end-diastolic frame (the first for triggered cines) fixes centre and orientation, the motion
            over all frames fixes "apex down" (`standardise`);
  stage 2   a second ResNet on the standardised frames; its points map back exactly to the original pixels;
            repeating standardise + stage 2 from the stage-2 points gives "1+2+2";
  inference the last pass can average crops shifted by a few known pixels (test-time augmentation, `tta_shifts`),
            each mapped back exactly; each pass's track can be smoothed over time (`smooth_track`); both are
            chosen on validation cines (`choose_inference`).
All geometry is one `cmrlib.transforms.Affine2D` per cine (OpenCV `warpAffine`), so image, points and the inverse
share a single matrix. Points are (x, y) = (column, row) pixels in `cmrlib.record.LANDMARKS` order.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import signal
from torch import nn

from .learn import device, export, load
from .measure import average_views, mapse, mv_displacement, mv_velocity, velocity_peaks
from .record import Cine
from .transforms import Affine2D, RandomAffine2D, fit_affine, median_iqr
from .utils import rng as _rng

__all__ = ["S1_SIZE", "STD_SIZE", "STD_RES", "VIEWS", "STAGES", "MVnetError", "Track", "tracks_from_cines", "load_cines",
           "mixed_tracks", "stage1_geometry", "standardise", "perturb_points", "to_unit", "from_unit", "frames_input",
           "Aug", "PointFrames", "stage_learner", "train_stage", "MVConfig", "fit_mvnet", "MVnet", "tta_shifts",
           "smooth_track", "choose_inference", "model_path", "predict_all", "point_errors", "valve_angle_error",
           "spatial_errors", "clinical", "evaluate",
           "observer_frames", "pooled_displacement_error", "summarise_spatial", "convention_matrix", "spatial_figure",
           "displacement_figure", "heatmap_figure", "tracking_figure"]

S1_SIZE = (160, 160)  # stage-1 input (H, W)
STD_SIZE = (118, 162)  # standardised crop (H, W)
STD_RES = 0.75  # mm per standardised pixel
VIEWS = ("2CH", "4CH")
STAGES = ("1", "1+2", "1+2+2")


class MVnetError(ValueError):
    """MVnet inputs are unusable (no landmarks, anisotropic pixels, wrong shapes)."""


# ---- data ------------------------------------------------------------------------------------------
@dataclass
class Track:
    """One cine's frames with its spacing and a (T,2,2) point track (reference or prediction)."""

    pixels: np.ndarray
    spacing: tuple[float, float]
    points: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    ed: int = 0
    subject: str = ""
    view: str = ""

    @property
    def frame_interval(self) -> float:
        """Mean ms between frames (NaN for one frame or no times)."""
        ft = self.frame_times
        return float(np.diff(ft).mean()) if ft is not None and len(ft) > 1 else float("nan")


def tracks_from_cines(cines: Iterable[Cine], landmark_set: str | None = "obsA") -> list[Track]:
    """`Track`s from 2D long-axis cines, carrying one landmark set (None: images only, e.g. real cines)."""
    out = []
    for c in cines:
        if c.is_stack:
            raise MVnetError(f"cine {c.cine_id}: MVnet needs 2D long-axis frames (T,H,W), got {c.pixels.shape}")
        pts = None
        if landmark_set is not None:
            if landmark_set not in c.landmarks:
                raise MVnetError(f"cine {c.cine_id}: no landmark set {landmark_set!r} (has {sorted(c.landmarks)})")
            pts = c.landmarks[landmark_set][:, :2]
        out.append(Track(c.pixels, tuple(c.spacing), pts, c.frame_times, int(c.ed or 0), c.subject, c.view))
    return out


def load_cines(store, view: str, split: str, limit: int | None = None) -> list[Cine]:
    """The cines of one view and split from a `CohortStore` (the first `limit` by id when given)."""
    ids = sorted(store.select(view=view, split=split))
    return [store.read(i) for i in ids[:limit]]


def mixed_tracks(cines: Sequence[Cine], sets: Sequence[str] = ("obsA", "obsB"), seed: int = 0) -> list[Track]:
    """One track per cine with its landmark set drawn at random from `sets` (a mixed-convention training set)."""
    g = _rng(seed)
    return [tracks_from_cines([c], str(g.choice(list(sets))))[0] for c in cines]


# ---- geometry --------------------------------------------------------------------------------------
def stage1_geometry(shape: tuple[int, int], size: tuple[int, int] = S1_SIZE) -> Affine2D:
    """The stage-1 frame: the whole image fitted (aspect kept, zero-padded) into `size`."""
    return fit_affine(tuple(shape), size)


def _mm_scale(spacing: Sequence[float], res: float) -> float:
    sy, sx = (float(s) for s in spacing)
    if abs(sy - sx) > 1e-3 * max(sy, sx):
        raise MVnetError(f"standardise: anisotropic pixels {tuple(spacing)} mm are not supported; resample first")
    return sx / res


def standardise(points: np.ndarray, spacing: Sequence[float], size: tuple[int, int] = STD_SIZE,
                res: float = STD_RES, ed: int = 0) -> Affine2D:
    """The standardising geometry from a (T,2,2) track: the ED frame fixes centre and angle, the motion apex down.

    Anterior/lateral (point 0) lands left of inferior/septal (point 1) on a horizontal line through the crop
    centre; if the valve midpoint moves up on average relative to its end-diastolic position (the valve is most
    basal there, so every other frame lies toward the apex) the map is mirrored so it moves down. `ed` is the
    end-diastolic frame: 0 for ECG-triggered cines (the paper's "first frame"); cines that start elsewhere in
    the cycle pass theirs, so the valve never leaves the crop's upper half.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2, 2)
    c, d = p[ed].mean(0), p[ed, 1] - p[ed, 0]
    if not np.isfinite(p[ed]).all() or np.hypot(*d) < 1e-6:
        raise MVnetError(f"standardise: ED-frame points {p[ed].tolist()} do not define a valve line")
    scale = _mm_scale(spacing, res)

    def geom(flip: bool) -> Affine2D:
        dx, dy = (-d[0] if flip else d[0]), d[1]  # Affine2D flips x before rotating
        return Affine2D(size=tuple(size), center=(float(c[0]), float(c[1])), angle=float(np.degrees(np.arctan2(dy, dx))),
                        scale=scale, flip=flip)

    g = geom(False)
    if len(p) > 1:
        mid = p.mean(1)
        down = (np.delete(mid, ed, 0) - mid[ed]) @ g.matrix[1, :2]  # vertical motion of the valve centre in the crop
        if down.mean() < 0:
            g = geom(True)
    return g


def perturb_points(points: np.ndarray, spacing: Sequence[float], sd_mm: float,
                   gen: int | np.random.Generator | None = 0) -> np.ndarray:
    """Points moved by iid Gaussian noise of `sd_mm` per coordinate (a stage-1-like error, for stage-2 training)."""
    g = _rng(gen)
    p = np.asarray(points, dtype=np.float64)
    sy, sx = (float(s) for s in spacing)
    return (p + g.normal(0.0, sd_mm, p.shape) / np.array([sx, sy])).astype(np.float32)


def to_unit(pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(x, y) pixels of a (H, W) frame to the network's units: 0 at the centre, +-1 at the edges."""
    h, w = size
    return ((np.asarray(pts, dtype=np.float32) - ((w - 1) / 2, (h - 1) / 2)) / (w / 2, h / 2)).astype(np.float32)


def from_unit(u: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Inverse of `to_unit`."""
    h, w = size
    return (np.asarray(u, dtype=np.float32) * (w / 2, h / 2) + ((w - 1) / 2, (h - 1) / 2)).astype(np.float32)


def _norm(frames: np.ndarray) -> np.ndarray:
    """Median/IQR-normalise each frame of a (T,H,W) stack (MVnet's intensity scaling)."""
    return np.stack([median_iqr(f) for f in frames]).astype(np.float32)


def frames_input(pixels: np.ndarray, geom: Affine2D) -> torch.Tensor:
    """Network input (T,1,H,W) for all frames of a cine under one geometry."""
    warped = geom.image(np.asarray(pixels, dtype=np.float32))
    return torch.from_numpy(_norm(warped.reshape(-1, *geom.size)))[:, None]


# ---- training ---------------------------------------------------------------------------------------
@dataclass
class Aug:
    """MVnet's augmentation: isotropic scale +-10 %, rotation +-10 deg, translation +-3 px."""

    degrees: float = 10.0
    scale: float = 0.10
    shift_px: float = 3.0

    def sampler(self, size: tuple[int, int]) -> RandomAffine2D:
        return RandomAffine2D(degrees=self.degrees, scale=(1 - self.scale, 1 + self.scale), flip_p=0.0,
                              translate=self.shift_px / max(size), seed=None)


class PointFrames(torch.utils.data.Dataset):
    """(image, target) items for one stage: every frame of every track, drawn on the fly.

    stage 1: the fitted 160x160 frame; stage 2: the frame standardised from the reference track perturbed by
    `perturb_mm` (so stage 2 learns to undo stage-1 errors). `aug` adds MVnet's random affine on top. Targets are
    the 4 normalised coordinates (`to_unit`). Randomness flows from `seed`; `fixed=True` redraws the same sample
    for an item every time (validation).
    """

    def __init__(self, tracks: Sequence[Track], stage: int = 1, aug: Aug | None = None, perturb_mm: float = 0.0,
                 seed: int = 0, fixed: bool = False, frames_per_cine: int | None = None):
        if stage not in (1, 2):
            raise MVnetError(f"stage must be 1 or 2, got {stage}")
        for t in tracks:
            if t.points is None:
                raise MVnetError(f"track {t.subject}_{t.view}: training needs reference points")
        self.tracks, self.stage, self.aug, self.perturb_mm = list(tracks), stage, aug, float(perturb_mm)
        self.seed, self.fixed, self.fpc = seed, fixed, frames_per_cine
        self.size = S1_SIZE if stage == 1 else STD_SIZE
        self.gen = _rng(seed)
        self.rand = aug.sampler(self.size) if aug is not None else None

    def __len__(self):
        return len(self.tracks) * self.fpc if self.fpc else sum(len(t.pixels) for t in self.tracks)

    def new_empty(self) -> "PointFrames":
        """An empty copy (what `Learner.export` keeps instead of the data)."""
        return PointFrames([], self.stage, self.aug, self.perturb_mm, self.seed, self.fixed, self.fpc)

    def frame(self, k: int, gen: np.random.Generator) -> tuple[int, int]:
        """(track, frame) of item k: all frames in order, or `frames_per_cine` per track (random, or evenly spaced when fixed)."""
        if not self.fpc:
            if not hasattr(self, "_items"):
                self._items = [(i, f) for i, t in enumerate(self.tracks) for f in range(len(t.pixels))]
            return self._items[k]
        i, j = divmod(k, self.fpc)
        n = len(self.tracks[i].pixels)
        return i, (j * n // self.fpc if self.fixed else int(gen.integers(n)))

    def geometry(self, i: int, gen: np.random.Generator) -> Affine2D:
        """The (possibly perturbed and augmented) geometry of track i for one draw."""
        t = self.tracks[i]
        if self.stage == 1:
            g = stage1_geometry(t.pixels.shape[1:])
        else:  # stage-1-like errors of every size up to perturb_mm, so both stage-2 passes are trained
            sd = self.perturb_mm * (1.0 if self.fixed else float(gen.random()))
            pts = perturb_points(t.points, t.spacing, sd, gen) if sd > 0 else t.points
            g = standardise(pts, t.spacing, self.size, ed=t.ed)
        return self.rand.sample(g, gen) if self.rand is not None else g

    def __getitem__(self, k: int):
        gen = _rng(self.seed * 1_000_003 + k) if self.fixed else self.gen
        i, f = self.frame(k, gen)
        g, t = self.geometry(i, gen), self.tracks[i]
        img = median_iqr(g.image(t.pixels[f]))
        y = to_unit(g.points(t.points[f]), self.size).reshape(-1)
        return torch.from_numpy(img)[None], torch.from_numpy(y)


def point_error_px(pred: torch.Tensor, targ: torch.Tensor, size: tuple[int, int] = S1_SIZE) -> torch.Tensor:
    """Mean Euclidean point error in the stage's pixels (metric shown while training)."""
    h, w = size
    s = pred.new_tensor([w / 2, h / 2])
    return ((pred.view(-1, 2, 2) - targ.view(-1, 2, 2)) * s).norm(dim=-1).mean()


def stage_learner(train: PointFrames, valid: PointFrames, model: nn.Module, bs: int = 32, lr: float = 1e-4):
    """A fastai Learner for one stage: MSE loss, Adam, the point error (px) as metric."""
    import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.losses import MSELossFlat
    from fastai.optimizer import Adam

    dls = DataLoaders(DataLoader(train, bs=bs, shuffle=True, drop_last=len(train) > bs),
                      DataLoader(valid, bs=bs * 2), device=device())
    metric = partial(point_error_px, size=train.size)
    metric.__name__ = "err_px"
    return Learner(dls, model, loss_func=MSELossFlat(), opt_func=Adam, lr=lr, metrics=[metric])


def train_stage(train_tracks: Sequence[Track], valid_tracks: Sequence[Track], stage: int, model: nn.Module,
                epochs: int = 10, bs: int = 32, lr: float = 1e-4, schedule: str = "fit", perturb_mm: float = 6.0,
                aug: Aug | None = None, seed: int = 0, quiet: bool = False, frames_per_cine: int | None = None):
    """Train one stage and return its Learner (`schedule` 'fit' = constant lr as the paper, 'one_cycle').

    frames_per_cine: frames drawn per training cine and epoch (None: all; consecutive frames are near-duplicates,
    so fewer frames per epoch and more epochs see more augmentations for the same compute).
    """
    aug = Aug() if aug is None else aug
    pm = perturb_mm if stage == 2 else 0.0
    tr = PointFrames(train_tracks, stage, aug, pm, seed, frames_per_cine=frames_per_cine)
    va = PointFrames(valid_tracks, stage, None, pm, seed + 1, fixed=True, frames_per_cine=frames_per_cine)
    if schedule not in ("fit", "one_cycle"):
        raise MVnetError(f"unknown schedule {schedule!r}; expected 'fit' or 'one_cycle'")
    learn = stage_learner(tr, va, model, bs, lr)
    fit = learn.fit_one_cycle if schedule == "one_cycle" else learn.fit
    with (learn.no_bar() if quiet else contextlib.nullcontext()), (learn.no_logging() if quiet else contextlib.nullcontext()):
        fit(epochs, lr)
    return learn


@dataclass
class MVConfig:
    """What one MVnet training run uses (a profile's model size and schedule)."""

    arch: str = "tiny"
    widths: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    head: str = "pool"
    coords: bool = False
    pretrained: bool = False
    epochs1: int = 10
    epochs2: int = 10
    bs: int = 32
    lr: float = 1e-4
    schedule: str = "fit"
    perturb_mm: float = 6.0
    frames_per_cine: int | None = None
    n_refine: int = 2
    window2: int | None = 2  # stage-2 soft-argmax: inference over +-window2 cells around the peak (None: whole map)
    smooth: int | None = None  # Savitzky-Golay window (frames) over each pass's track (None: per-frame points as is)
    tta: float | None = None  # last stage-2 pass: average crops shifted by +-tta standardised px (None: one crop)
    seed: int = 0

    def model(self, stage: int = 1) -> nn.Module:
        """A fresh regressor for `stage` (stage 1 keeps the whole-map soft-argmax: its maps can be multi-modal)."""
        from .models.regress import point_regressor

        m = point_regressor(self.arch, 4, 1, self.pretrained, tuple(self.widths), tuple(self.blocks), self.head,
                            self.coords, self.window2 if stage == 2 else None)
        return m.to(memory_format=torch.channels_last)  # ~25 % faster convolutions on CPU


def fit_mvnet(train: Sequence[Track], valid: Sequence[Track], cfg: MVConfig, view: str = "",
              models_dir: str | Path | None = None, prefix: str = "A", quiet: bool = False,
              epochs: tuple[int, int] | None = None) -> tuple["MVnet", pd.DataFrame]:
    """Train stage 1 then stage 2 for one view, export both Learners, and return the tracker and a log table."""
    e1, e2 = epochs or (cfg.epochs1, cfg.epochs2)
    models, log = [], []
    for stage, ep in ((1, e1), (2, e2)):
        torch.manual_seed(cfg.seed + stage)
        t0 = time.perf_counter()
        learn = train_stage(train, valid, stage, cfg.model(stage), ep, cfg.bs, cfg.lr, cfg.schedule, cfg.perturb_mm,
                            seed=cfg.seed + 10 * stage, quiet=quiet, frames_per_cine=cfg.frames_per_cine)
        loss, err = learn.validate() if len(valid) else (float("nan"), float("nan"))
        log.append(dict(prefix=prefix, view=view, stage=stage, epochs=ep, n_train_frames=len(learn.dls.train.dataset),
                        valid_loss=float(loss), valid_err_px=float(err), seconds=time.perf_counter() - t0))
        if models_dir is not None:
            export(learn, model_path(models_dir, view, stage, prefix))
        models.append(learn.model)
    return MVnet(models[0], models[1], view, cfg.n_refine, cfg.smooth, cfg.tta), pd.DataFrame(log)


# ---- inference --------------------------------------------------------------------------------------
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
        self.stage1.eval()
        self.stage2.eval()

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

    @classmethod
    def load(cls, folder: str | Path, view: str, prefix: str = "A", n_refine: int = 2,
             smooth: int | None = None, tta: float | None = None) -> "MVnet":
        """Load the two exported stage Learners `{prefix}_{view}_stage{1,2}.pkl` from a models folder."""
        ms = [load(model_path(folder, view, s, prefix), f"MVnet stage-{s} model for {view}", "notebook 03").model
              for s in (1, 2)]
        return cls(ms[0], ms[1], view, n_refine, smooth, tta)


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
    return Path(folder) / f"{prefix}_{view}_stage{stage}.pkl"


# ---- evaluation -------------------------------------------------------------------------------------
def _mm(points: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    sy, sx = (float(s) for s in spacing)
    return np.asarray(points, dtype=np.float64) * (sx, sy)


def point_errors(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(T,2) Euclidean error in mm of each point."""
    return np.linalg.norm(_mm(pred, spacing) - _mm(ref, spacing), axis=-1)


def valve_angle_error(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(T,) absolute angle in degrees between the predicted and reference valve lines."""
    dp, dr = (np.diff(_mm(a, spacing), axis=1)[:, 0] for a in (pred, ref))
    ang = np.degrees(np.arctan2(dp[:, 1], dp[:, 0]) - np.arctan2(dr[:, 1], dr[:, 0]))
    return np.abs((ang + 180) % 360 - 180)


def _apex_side(points: np.ndarray, spacing: Sequence[float], ed: int = 0) -> np.ndarray:
    """A point on the apex side of a track's ED valve line, from its own motion (the valve moves toward the apex)."""
    g = standardise(points, spacing, ed=ed)
    return g.inverse_points(np.array([(g.size[1] - 1) / 2, g.size[0] - 1.0]))


def spatial_errors(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], ed: int = 0) -> pd.DataFrame:
    """Per-frame errors: each point (mm), valve-line angle (deg), displacement (auto - ref, mm)."""
    e = point_errors(pred, ref, spacing)
    da = mv_displacement(pred, spacing, ed, _apex_side(pred, spacing, ed))
    dr = mv_displacement(ref, spacing, ed, _apex_side(ref, spacing, ed))
    return pd.DataFrame({"frame": np.arange(len(ref)), "err_p0_mm": e[:, 0], "err_p1_mm": e[:, 1],
                         "err_mm": e.mean(1), "angle_deg": valve_angle_error(pred, ref, spacing),
                         "disp_auto_mm": da, "disp_ref_mm": dr, "disp_err_mm": da - dr})


def clinical(views: dict[str, tuple[np.ndarray, Track]], window: int | None = 5) -> dict:
    """MAPSE (mm), s', e', a' (cm/s) of one subject from its views' tracks, displacement averaged over views.

    views: view -> (points (T,2,2), Track with spacing, frame times and ED). Each track is rolled to start at ED;
    its apex side comes from its own motion (`standardise`); window: Savitzky-Golay velocity window (None: none).
    """
    curves, cycle = [], []
    for pts, t in views.values():
        p = np.roll(np.asarray(pts), -t.ed, axis=0)
        curves.append(mv_displacement(p, t.spacing, 0, _apex_side(p, t.spacing, 0)))
        cycle.append(t.frame_interval * len(p))
    d = average_views(*curves)
    w = window if window and window < len(d) else None
    pk = velocity_peaks(mv_velocity(d, float(np.nanmean(cycle)) / len(d), w), 0)
    return dict(MAPSE=mapse(d), s_prime=pk["s_prime"], e_prime=pk["e_prime"], a_prime=pk["a_prime"])


def predict_all(trackers: dict[str, MVnet], tests: dict[str, list[Track]]) -> dict[str, list[dict[str, np.ndarray]]]:
    """`MVnet.track` outputs for every test cine: view -> list aligned with `tests[view]`."""
    from fastprogress.fastprogress import progress_bar

    return {v: [trackers[v].track_cine(t) for t in progress_bar(ts, leave=False)] for v, ts in tests.items()}


def evaluate(predictions: dict[str, list[dict[str, np.ndarray]]], tests: dict[str, list[Track]],
             observers: dict[str, dict[str, list[np.ndarray]]] | None = None,
             window: int | None = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare predictions with the reference: (per-frame spatial table, per-subject clinical table).

    predictions: from `predict_all`; tests: view -> tracks whose `points` are the reference ('ref');
    observers: other readers, name -> view -> (T,2,2) tracks aligned with `tests` (e.g. {'obsA2': ...}).
    Clinical columns are `<measure>_<source>` for source in ref, each stage and each observer.
    """
    frames, subj = [], {}
    for view, tracks in tests.items():
        for i, t in enumerate(tracks):
            s = subj.setdefault(t.subject, {})
            s.setdefault("ref", {})[view] = (t.points, t)
            for stage, p in predictions[view][i].items():
                df = spatial_errors(p, t.points, t.spacing, t.ed)
                frames.append(df.assign(subject=t.subject, view=view, stage=stage))
                s.setdefault(stage, {})[view] = (p, t)
            for name, r in (observers or {}).items():
                s.setdefault(name, {})[view] = (r[view][i], t)
    rows = [{"subject": sid, **{f"{m}_{src}": v for src, views in s.items() for m, v in clinical(views, window).items()}}
            for sid, s in subj.items()]
    lead = ["subject", "view", "stage"]
    frames = pd.concat(frames, ignore_index=True)
    return frames[lead + [c for c in frames.columns if c not in lead]], pd.DataFrame(rows)


def choose_inference(trackers: dict[str, MVnet], valid: dict[str, list[Track]],
                     windows: Sequence[int | None] = (None, 5, 7),
                     ttas: Sequence[float | None] = (None,)) -> tuple[dict, pd.DataFrame]:
    """Set every tracker's smoothing window and test-time shift to the pair with the lowest |mean| + SD of the
    final-stage displacement error on validation cines (never the test split); returns (choice, one row per pair).

    |mean| + SD weighs a bias like a spread: RMSE hardly sees a bias well below the SD, so it favours windows that
    flatten the motion's peaks (a negative displacement bias and a lower e'). Ties keep the earlier (cheaper) pair.
    """
    rows = []
    for tta, w in ((a, w) for a in ttas for w in windows):
        for t in trackers.values():
            t.smooth, t.tta = w, tta
        frames, _ = evaluate(predict_all(trackers, valid), valid, window=None)
        d = frames.loc[frames["stage"] == STAGES[-1], "disp_err_mm"]
        rows.append(dict(tta=tta, smooth=w, disp_err_mean_mm=d.mean(), disp_err_sd_mm=d.std(),
                         disp_rmse_mm=float(np.sqrt((d ** 2).mean())), criterion_mm=abs(d.mean()) + d.std()))
    best = rows[int(np.argmin([r["criterion_mm"] for r in rows]))]
    for t in trackers.values():
        t.smooth, t.tta = best["smooth"], best["tta"]
    tab = pd.DataFrame(rows).assign(**{k: pd.Series([r[k] for r in rows], dtype=object) for k in ("tta", "smooth")})
    return dict(smooth=best["smooth"], tta=best["tta"]), tab


def observer_frames(observers: dict[str, dict[str, list[np.ndarray]]], tests: dict[str, list[Track]]) -> pd.DataFrame:
    """Per-frame errors of other readers (or the true motion) against the reference, `stage` = their name.

    The reference is itself an annotation: these rows bound what any tracker can reach against it.
    """
    preds = {v: [{k: observers[k][v][i] for k in observers} for i in range(len(ts))] for v, ts in tests.items()}
    return evaluate(preds, tests, window=None)[0]


def pooled_displacement_error(frames: pd.DataFrame) -> pd.DataFrame:
    """Displacement error (mm) mean and SD per stage over both views (the paper's -0.10 +- 0.97 mm figure)."""
    g = frames.groupby("stage", sort=False)["disp_err_mm"].agg(["mean", "std", "count"])
    return g.rename(columns={"mean": "disp_err_mean_mm", "std": "disp_err_sd_mm", "count": "n_frames"}).reset_index()


def summarise_spatial(frames: pd.DataFrame) -> pd.DataFrame:
    """Mean +- SD of point, angle and displacement errors per view and stage (the paper's Fig. 4/5 numbers)."""
    cols = ["err_p0_mm", "err_p1_mm", "err_mm", "angle_deg", "disp_err_mm"]
    g = frames.groupby(["view", "stage"], sort=False)[cols].agg(["mean", "std"])
    g.columns = [f"{c}_{s}" for c, s in g.columns]
    return g.reset_index()


def convention_matrix(preds: dict[str, dict], tests: dict[str, dict[str, list[Track]]], stage: str = "1+2+2",
                      window: int | None = 5) -> pd.DataFrame:
    """Train-convention x test-convention errors (the paper's Fig. 6): mean point error, |displacement error|, MAPSE bias.

    preds: trained-on name -> `predict_all` output; tests: reference name -> view -> tracks carrying that reference.
    """
    rows = []
    for tr_name, p in preds.items():
        for te_name, te in tests.items():
            frames, subj = evaluate(p, te, window=window)
            f = frames[frames["stage"] == stage]
            rows.append(dict(trained_on=tr_name, tested_on=te_name, err_mm=f["err_mm"].mean(),
                             abs_disp_err_mm=f["disp_err_mm"].abs().mean(), disp_err_mm=f["disp_err_mm"].mean(),
                             mapse_bias_mm=(subj[f"MAPSE_{stage}"] - subj["MAPSE_ref"]).mean()))
    return pd.DataFrame(rows)


# ---- figures ----------------------------------------------------------------------------------------
def spatial_figure(frames: pd.DataFrame):
    """Per view: point error, valve-angle error and displacement error by stage (the paper's Fig. 4 analogue)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    views = list(dict.fromkeys(frames["view"]))
    cols = (("err_mm", "Euclidean error (mm)"), ("angle_deg", "valve-line angle error (°)"),
            ("disp_err_mm", "displacement error (mm)"))
    fig, axes = plt.subplots(len(views), 3, figsize=(11, 3.2 * len(views)), squeeze=False, constrained_layout=True)
    for i, v in enumerate(views):
        f = frames[frames["view"] == v]
        for j, (c, name) in enumerate(cols):
            ax = axes[i, j]
            sns.boxplot(data=f, x="stage", y=c, ax=ax, showfliers=False, color="tab:blue", width=0.5)
            if c == "disp_err_mm":
                ax.axhline(0, color="0.4", lw=0.8, ls=":")
            ax.set_title(f"{v}: {name}", fontsize=9)
            ax.set_xlabel("")
            ax.set_ylabel(name if j == 0 else "")
    return fig


def displacement_figure(frames: pd.DataFrame, stages: Sequence[str] = STAGES, n_bins: int = 20):
    """Displacement error over the cycle (mean +- SD per phase bin) per view and stage (Fig. 5 analogue)."""
    import matplotlib.pyplot as plt

    views = list(dict.fromkeys(frames["view"]))
    fig, axes = plt.subplots(1, len(views), figsize=(5 * len(views), 3.2), squeeze=False, constrained_layout=True)
    n = frames.groupby(["subject", "view", "stage"])["frame"].transform("max") + 1
    f = frames.assign(phase=np.minimum((frames["frame"] / n * n_bins).astype(int), n_bins - 1) / n_bins)
    for ax, v in zip(axes[0], views):
        for s in stages:
            g = f[(f["view"] == v) & (f["stage"] == s)].groupby("phase")["disp_err_mm"].agg(["mean", "std"])
            ax.plot(g.index, g["mean"], marker=".", label=s)
            ax.fill_between(g.index, g["mean"] - g["std"], g["mean"] + g["std"], alpha=0.15)
        ax.axhline(0, color="0.4", lw=0.8, ls=":")
        ax.set_title(f"{v}: displacement error (auto − ref) over the cine", fontsize=9)
        ax.set_xlabel("fraction of the cine")
        ax.set_ylabel("mm")
        ax.legend(fontsize=7)
    return fig


def heatmap_figure(mat: pd.DataFrame, values: Sequence[str] = ("err_mm", "abs_disp_err_mm")):
    """Heat maps of `convention_matrix` values (rows: trained on, columns: tested on)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(values), figsize=(4.2 * len(values), 3.4), squeeze=False, constrained_layout=True)
    for ax, v in zip(axes[0], values):
        tab = mat.pivot(index="trained_on", columns="tested_on", values=v)
        sns.heatmap(tab, annot=True, fmt=".2f", cmap="viridis", ax=ax, cbar_kws=dict(label="mm"))
        ax.set_title(v.replace("_", " "), fontsize=9)
    return fig


def tracking_figure(pixels: np.ndarray, tracks: dict[str, np.ndarray], spacing: Sequence[float],
                    frames: Sequence[int] | None = None, title: str = "", ed: int = 0):
    """A cine's frames with tracked points (one marker per set) and the displacement curves below."""
    import matplotlib.pyplot as plt

    from .plots import curve_plot, overlay

    T = len(pixels)
    frames = list(frames) if frames is not None else [int(round(x)) for x in np.linspace(0, T - 1, 4)]
    fig = plt.figure(figsize=(3 * len(frames), 5.8), constrained_layout=True)
    gs = fig.add_gridspec(2, len(frames), height_ratios=(1.3, 1))
    for j, f in enumerate(frames):
        overlay(fig.add_subplot(gs[0, j]), pixels[f], points={k: v[f] for k, v in tracks.items()},
                title=f"{title} frame {f}".strip())
    curves = {k: mv_displacement(np.roll(v, -ed, 0), spacing, 0, _apex_side(v, spacing, ed)) for k, v in tracks.items()}
    curve_plot(fig.add_subplot(gs[1, :]), curves, ylabel="MV displacement (mm)", title=f"{title} displacement".strip())
    return fig
