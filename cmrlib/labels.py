"""Canonical label set and every source's label convention, mapped in exactly this one place."""
from __future__ import annotations

import numpy as np

BG, LV, MYO, RV, LA, RA = 0, 1, 2, 3, 4, 5
NAMES = {BG: "background", LV: "LV", MYO: "MYO", RV: "RV", LA: "LA", RA: "RA"}
N_CLASSES = len(NAMES)
CODES = [NAMES[k] for k in range(N_CLASSES)]  # label names indexed by value: fastai's MaskBlock codes and dls.vocab
VALUES = {v: k for k, v in NAMES.items()}  # name -> label value
MR_MIN_GRADE = 1  # a phantom subject has mitral regurgitation from this grade (1 mild, 2 moderate, 3 severe)

# source label value -> canonical label value (values absent from a table are errors)
SOURCE_MAPS: dict[str, dict[int, int]] = {
    "acdc": {0: BG, 1: RV, 2: MYO, 3: LV},
    "mnms": {0: BG, 1: LV, 2: MYO, 3: RV},
    "mnms2": {0: BG, 1: LV, 2: MYO, 3: RV},
    "ukbb_sax": {0: BG, 1: LV, 2: MYO, 3: RV},
    "ukbb_la_4ch": {0: BG, 1: LV, 2: MYO, 3: RV, 4: LA, 5: RA},
    "ukbb_la_2ch": {0: BG, 1: LA},
    "canonical": {k: k for k in NAMES},
}


class LabelError(ValueError):
    """A label map holds values its source convention does not define."""


class NoLabels(ValueError):
    """A cine whose own label maps were asked for has none at some frame."""


def to_canonical(mask: np.ndarray, source: str, where: str = "") -> np.ndarray:
    """Map a source label map to the canonical labels; unknown values raise `LabelError`."""
    table = SOURCE_MAPS[source]
    lut = np.full(256, 255, dtype=np.uint8)
    for k, v in table.items():
        lut[k] = v
    m = np.asarray(mask)
    if m.size and (m.min() < 0 or m.max() > 255 or not np.allclose(m, np.round(m))):
        raise LabelError(f"{where or 'mask'}: non-integer or out-of-range label values for source {source!r}")
    out = lut[m.astype(np.int64)]
    if (out == 255).any():
        bad = sorted(set(np.unique(m[out == 255]).astype(int).tolist()))
        raise LabelError(f"{where or 'mask'}: label values {bad} are not in the {source!r} convention {sorted(table)}")
    return out
