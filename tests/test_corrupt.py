"""Restoration-pretext corruptions (SSLHF): each one changes only what it says and stays within its bounds."""
from __future__ import annotations

import numpy as np
import pytest

from cmrlib.transforms import corrupt as C


@pytest.fixture
def cine():
    return np.random.default_rng(0).normal(size=(12, 48, 48)).astype(np.float32)


def test_local_shuffle_only_permutes_within_its_windows(cine):
    f = C.random_local_shuffle(cine, np.random.default_rng(1), windows_per_frame=3, max_frac=0.125)
    out = f(cine)
    inside = np.zeros(cine.shape, bool)
    for t, r, c, h, w in f.windows:
        assert h <= 6 and w <= 6  # at most 1/8 of the side
        inside[t, r:r + h, c:c + w] = True
    assert np.array_equal(out[~inside], cine[~inside])
    for t in range(len(cine)):  # every frame keeps its values, only moved within its windows
        assert np.array_equal(np.sort(out[t].ravel()), np.sort(cine[t].ravel()))
    one = C.LocalShuffle(f.windows[:1], f.perms[:1])
    (t, r, c, h, w) = f.windows[0]
    assert np.array_equal(np.sort(one(cine)[t, r:r + h, c:c + w].ravel()), np.sort(cine[t, r:r + h, c:c + w].ravel()))
    assert out.dtype == cine.dtype and not np.shares_memory(out, cine)


def test_patch_cover_boxes_stay_within_the_stated_bounds(cine):
    f = C.random_patch_cover(cine, np.random.default_rng(2), max_patches=5, area=(1 / 36, 1 / 9))
    out = f(cine)
    per_frame = np.bincount([b[0] for b in f.boxes], minlength=len(cine))
    assert per_frame.min() >= 1 and per_frame.max() <= 5
    frame_area = cine.shape[1] * cine.shape[2]
    covered = np.zeros(cine.shape, bool)
    for (t, r, c, h, w), v in zip(f.boxes, f.values):
        assert 0.8 / 36 <= h * w / frame_area <= 1.2 / 9
        assert v.min() >= cine.min() and v.max() <= cine.max()  # random values within the patch's range
        covered[t, r:r + h, c:c + w] = True
    assert np.array_equal(out[~covered], cine[~covered])


def test_frame_cover_replaces_whole_runs_of_at_most_three_frames(cine):
    f = C.random_frame_cover(cine, np.random.default_rng(3), groups=5, max_len=3)
    out = f(cine)
    frames = [b[0] for b in f.boxes]
    assert 1 <= len(frames) <= 15 and all(b[1:] == (0, 0, 48, 48) for b in f.boxes)  # whole frames
    kept = [t for t in range(len(cine)) if t not in frames]
    assert np.array_equal(out[kept], cine[kept])
    for t in frames:
        assert not np.allclose(out[t], cine[t])
    runs = np.split(np.array(frames), np.flatnonzero(np.diff(frames) > 1) + 1)
    assert len(runs) <= 5


def test_random_corruption_is_seeded_and_applies_at_least_one(cine):
    a = C.corrupt(cine, C.random_corruption(cine, np.random.default_rng(7)))
    b = C.corrupt(cine, C.random_corruption(cine, np.random.default_rng(7)))
    assert np.array_equal(a, b) and not np.array_equal(a, cine)
    only = C.random_corruption(cine, np.random.default_rng(8), kinds=("frame",), p=0.0)
    assert len(only) == 1 and all(b[1:] == (0, 0, 48, 48) for b in only[0].boxes)
