"""Named augmentation recipes for the segmentation feed: keyword arguments of `dataloaders` (`cmrlib.data.seg_dls`).

- `real`: an affine (rotation, scale, shift, a left-right mirror on half the frames) and intensity jitter (gamma,
  contrast, noise, blur): real images.
- `phantom`: the same plus distractor blobs in the background, since the phantom's scenes are emptier than a chest.
- `randomised`: domain randomisation for sim-to-real: a wider affine, coil bias field and lower resolution,
  per-structure random contrast (SynthSeg-style), distractor blobs, dark papillary spots inside the LV blood pool
  and a thicker wall round a smaller cavity; each on part of the samples (`p`), so plain frames are seen too.
- `randomised_mirrored`: `randomised` with a left-right mirror on half the frames (phantom + ACDC).
"""
from __future__ import annotations

import copy

AFFINE = {"degrees": 20, "scale": [0.8, 1.2], "translate": 0.06, "flip_p": 0.0, "elastic": 0.0}  # SegAffine
INTENSITY = {"gamma": [0.5, 2.0], "contrast": [0.8, 1.2], "noise": 0.1, "blur_p": 0.3}  # IntensityAug
CLUTTER = {"n": 8, "p": 0.8}  # ClutterAug: distractor blobs in the background
LV_SPOTS = {"n": 4, "radius": [1.5, 4.0], "labels": [1], "level": [5, 40], "p": 0.5}  # ClutterAug: dark LV spots

RECIPES = {
    "real": {"aug": {**AFFINE, "flip_p": 0.5}, "intensity": INTENSITY},  # mirrored too: test-time mirroring is fair
    "phantom": {"aug": AFFINE, "intensity": INTENSITY, "clutter": CLUTTER},
    "randomised": {
        "aug": {"degrees": 45, "scale": [0.7, 1.4], "translate": 0.1, "flip_p": 0.0, "elastic": 0.0},
        "intensity": {"gamma": [0.5, 2.0], "contrast": [0.7, 1.3], "noise": 0.15, "blur_p": 0.3, "blur": [0.5, 1.5],
                      "bias": 0.6, "lowres": [1.0, 2.5], "lowres_p": 0.5, "p": 0.6},  # + coil bias, lower resolution
        "label_intensity": {"gain": [0.6, 1.6], "shift": 0.5, "p": 0.6},  # LabelIntensityAug per structure
        "wall": {"frac": [0.1, 0.6], "p": 0.4},  # WallAug: thicker myocardium round a smaller LV cavity
        "clutter": [CLUTTER, LV_SPOTS],
    },
}
RECIPES["randomised_mirrored"] = copy.deepcopy(RECIPES["randomised"])  # the same, mirrored on half the frames:
RECIPES["randomised_mirrored"]["aug"]["flip_p"] = 0.5  # for a model that may be read with test-time mirroring


def recipe(name: str) -> dict:
    """A copy of a named recipe, to pass to `dataloaders` as keyword arguments."""
    if name not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {name!r}; one of {sorted(RECIPES)}")
    return copy.deepcopy(RECIPES[name])
