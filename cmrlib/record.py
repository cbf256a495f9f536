"""The one canonical cine record that every source, store and method shares."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

VIEWS = ("SAX", "2CH", "3CH", "4CH")
# landmark names per long-axis view, in (x, y) = (column, row) pixel coordinates
LANDMARKS = {"2CH": ("anterior", "inferior"), "4CH": ("lateral", "septal"), "3CH": ("anterior", "posterior")}


SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # subject ids become folder and file names


class RecordError(ValueError):
    """A cine record is internally inconsistent (shapes, spacing, indices)."""


def is_safe_id(subject) -> bool:
    """True for an id made of letters, digits, '-' and '_' (at most 64, not starting with '-' or '_'): never a path."""
    return isinstance(subject, str) and SAFE_ID.fullmatch(subject) is not None


@dataclass
class Cine:
    """One cine: pixels (T,H,W) or (T,Z,H,W) with spacing, times, view, optional labels and landmarks.

    spacing: mm per frame axis, (sy, sx) for 2D frames or (sz, sy, sx) for SAX stacks (sz = slice spacing).
    frame_times: ms from the trigger, shape (T,).
    labels: canonical uint8 label maps, same shape as pixels; `labelled` (T,) says which frames carry them.
    landmarks: name -> (T, K, 2) float array of (x, y) pixel coordinates (e.g. 'truth', 'obsA', 'obsB').
    ed, es: 0-based frame indices into pixels (None when unknown).
    meta: JSON-serialisable subject-level metadata and truths (never a patient identifier).
    """

    subject: str
    view: str
    pixels: np.ndarray
    spacing: tuple[float, ...]
    frame_times: np.ndarray
    labels: np.ndarray | None = None
    labelled: np.ndarray | None = None
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    ed: int | None = None
    es: int | None = None
    source: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.pixels = np.asarray(self.pixels, dtype=np.float32)
        self.frame_times = np.asarray(self.frame_times, dtype=np.float32)
        self.spacing = tuple(float(s) for s in self.spacing)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.uint8)
            if self.labelled is None:
                self.labelled = np.ones(self.n_frames, dtype=bool)
        if self.labelled is not None:
            self.labelled = np.asarray(self.labelled, dtype=bool)
        self.landmarks = {k: np.asarray(v, dtype=np.float32) for k, v in self.landmarks.items()}
        self.validate()

    @property
    def n_frames(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def is_stack(self) -> bool:
        return self.pixels.ndim == 4

    @property
    def cine_id(self) -> str:
        return f"{self.subject}_{self.view}"

    @property
    def frame_interval(self) -> float:
        """Mean time between frames in ms."""
        return float(np.diff(self.frame_times).mean()) if self.n_frames > 1 else float("nan")

    def rolled(self, k: int) -> "Cine":
        """The same cycle started `k` frames later (frames, labels, landmarks and ED/ES rolled together; the frame
        times kept): an R-wave-triggered cine has ED at frame 0, which a detector must not learn to expect."""
        k, n = int(k), self.n_frames
        roll = lambda a: None if a is None else np.roll(a, k, axis=0)
        at = lambda i: None if i is None else (int(i) + k) % n
        return replace(self, pixels=roll(self.pixels), labels=roll(self.labels), labelled=roll(self.labelled),
                       landmarks={name: roll(v) for name, v in self.landmarks.items()}, ed=at(self.ed), es=at(self.es),
                       meta={**self.meta, "rolled_by": k})

    def validate(self) -> "Cine":
        """Raise `RecordError` when shapes, spacing or indices disagree."""
        p, where = self.pixels, f"cine {self.cine_id}"
        if not is_safe_id(self.subject):
            raise RecordError(f"subject id {self.subject!r} is not letters, digits, '-' and '_' (at most 64)")
        if self.view not in VIEWS:
            raise RecordError(f"{where}: unknown view {self.view!r}, expected one of {VIEWS}")
        if p.ndim not in (3, 4):
            raise RecordError(f"{where}: pixels must be (T,H,W) or (T,Z,H,W), got shape {p.shape}")
        if len(self.spacing) != p.ndim - 1 or min(self.spacing) <= 0:
            raise RecordError(f"{where}: spacing {self.spacing} does not fit pixels {p.shape}")
        if self.frame_times.shape != (p.shape[0],):
            raise RecordError(f"{where}: frame_times shape {self.frame_times.shape} != ({p.shape[0]},)")
        if self.labels is not None and self.labels.shape != p.shape:
            raise RecordError(f"{where}: labels shape {self.labels.shape} != pixels shape {p.shape}")
        if self.labelled is not None and self.labelled.shape != (p.shape[0],):
            raise RecordError(f"{where}: labelled shape {self.labelled.shape} != ({p.shape[0]},)")
        for k, v in self.landmarks.items():
            if v.ndim != 3 or v.shape[0] != p.shape[0] or v.shape[2] != 2:
                raise RecordError(f"{where}: landmarks[{k!r}] shape {v.shape} is not (T, K, 2)")
        for name in ("ed", "es"):
            i = getattr(self, name)
            if i is not None and not 0 <= int(i) < p.shape[0]:
                raise RecordError(f"{where}: {name}={i} outside 0..{p.shape[0] - 1}")
        return self
