"""Intensity normalisation, invertible 2D geometry and the augmentations built on them, by kind:

- `geometry`: `Affine2D` (deterministic, exactly invertible; images, masks and points through one matrix),
  `RandomAffine2D` (only samples one), `fit_affine`, elastic fields;
- `intensity`: `normalise` and the deterministic intensity maps (`bias_field`, `degrade`, `remap_labels`,
  `thicken_wall`);
- `augment`: fastai transforms that draw parameters and delegate to the deterministic maps (`SegAffine`,
  `IntensityAug`, `LabelIntensityAug`, `ClutterAug`, `WallAug`, `HeartCrop`), as TorchIO splits random from
  deterministic;
- `corrupt`: the restoration pretext's corruptions of a cine patch (`LocalShuffle`, `PatchCover`; frame
  covering is a `PatchCover` of whole frames; the `random_*` functions draw them), kept in their module (`cmrlib.transforms.corrupt`).

Every name is importable from `cmrlib.transforms` as before.
"""
from .augment import ClutterAug, HeartCrop, IntensityAug, LabelIntensityAug, PairAug, SegAffine, WallAug
from .geometry import Affine2D, RandomAffine2D, elastic_field, fit_affine, warp_field
from .intensity import (bias_field, clip_zscore, degrade, median_iqr, normalise, percentile_range, remap_labels,
                        thicken_wall)

__all__ = ["normalise", "clip_zscore", "median_iqr", "Affine2D", "RandomAffine2D", "fit_affine", "SegAffine",
           "IntensityAug", "PairAug", "LabelIntensityAug", "ClutterAug", "elastic_field", "warp_field", "bias_field",
           "degrade", "remap_labels", "thicken_wall", "WallAug", "HeartCrop", "percentile_range"]
