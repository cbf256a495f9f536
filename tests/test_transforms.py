"""Geometry is exactly invertible, keeps image, mask and points aligned, and repeats for a seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.torch_core import TensorImage, TensorMask
from fastai.vision.core import TensorPoint

from cmrlib.transforms import (Affine2D, ClutterAug, HeartCrop, IntensityAug, LabelIntensityAug, RandomAffine2D,
                               SegAffine, WallAug, bias_field, clip_zscore, degrade, fit_affine, median_iqr, normalise,
                               remap_labels, thicken_wall)

CASES = [
    dict(angle=0.0, scale=1.0, flip=False, shift=(0.0, 0.0)),
    dict(angle=30.0, scale=0.75, flip=False, shift=(3.5, -2.0)),
    dict(angle=-125.0, scale=1.6, flip=True, shift=(-4.0, 7.25)),
]


def dot_image(h=80, w=96, xy=(30.0, 50.0), r=4):
    """A bright disc and its label at a known (x, y) centre."""
    yy, xx = np.mgrid[0:h, 0:w]
    m = ((xx - xy[0]) ** 2 + (yy - xy[1]) ** 2 <= r * r)
    return m.astype(np.float32), m.astype(np.uint8) * 3


def centroid(a):
    yy, xx = np.nonzero(a)
    w = a[yy, xx].astype(np.float64)
    return np.array([(xx * w).sum() / w.sum(), (yy * w).sum() / w.sum()])


@pytest.mark.parametrize("p", CASES)
def test_points_round_trip(p):
    aff = Affine2D(size=(64, 72), center=(40.3, 33.1), **p)
    pts = np.random.default_rng(0).uniform(0, 90, size=(5, 7, 2))
    back = aff.inverse_points(aff.points(pts))
    assert back.shape == pts.shape
    assert np.abs(back - pts).max() < 0.01


@pytest.mark.parametrize("p", CASES)
def test_image_mask_points_stay_aligned(p):
    img, msk = dot_image()
    aff = Affine2D(size=(96, 96), center=(48.0, 40.0), **p)
    pt = aff.points(np.array([30.0, 50.0]))
    wi, wm = aff.image(img), aff.mask(msk)
    assert wm.dtype == np.uint8 and set(np.unique(wm)) <= {0, 3}
    assert np.linalg.norm(centroid(wi) - pt) < 0.5
    assert np.linalg.norm(centroid(wm == 3) - pt) < 0.75


def test_rotation_direction_and_flip():
    """A positive angle turns counter-clockwise as displayed (rows down); flip mirrors x about the centre."""
    aff = Affine2D(size=(101, 101), center=(50.0, 50.0), angle=90.0)
    # a point to the right of the centre goes to the top (smaller row) under a displayed CCW turn
    np.testing.assert_allclose(aff.points(np.array([60.0, 50.0])), [50.0, 40.0], atol=1e-4)
    flip = Affine2D(size=(101, 101), center=(50.0, 50.0), flip=True)
    np.testing.assert_allclose(flip.points(np.array([60.0, 45.0])), [40.0, 45.0], atol=1e-4)


def test_inverse_image_restores_the_grid():
    img, msk = dot_image()
    aff = Affine2D(size=(128, 128), center=(47.5, 39.5), angle=20.0, scale=1.5)
    back = aff.inverse_image(aff.mask(msk), msk.shape, nearest=True)
    assert back.shape == msk.shape
    assert (back == msk).mean() > 0.99
    stack = aff.inverse_image(np.stack([aff.image(img)] * 7), img.shape)  # many channels at once
    assert stack.shape == (7, *img.shape)


def test_fit_affine_spacing_and_size():
    a = fit_affine((200, 160), 128, in_spacing=(1.25, 1.25), spacing=2.5)
    assert a.scale == pytest.approx(0.5) and a.size == (128, 128)
    # the input centre lands on the output centre
    np.testing.assert_allclose(a.points(np.array([79.5, 99.5])), [63.5, 63.5], atol=1e-5)
    b = fit_affine((200, 160), 64)
    assert b.scale == pytest.approx(64 / 200)
    with pytest.raises(ValueError, match="input spacing"):
        fit_affine((10, 10), 32, spacing=1.0)


def test_random_affine_is_deterministic_for_a_seed():
    base = Affine2D(size=(64, 64), center=(31.5, 31.5))
    draw = lambda seed: [RandomAffine2D(degrees=30, flip_p=0.5, seed=seed).sample(base) for _ in range(1)][0]
    assert draw(3) == draw(3)
    assert draw(3) != draw(4)
    r = RandomAffine2D(degrees=10, scale=(0.8, 1.2), seed=0)
    for _ in range(20):
        a = r(base)
        assert -10 <= a.angle <= 10 and 0.8 - 1e-9 <= a.scale <= 1.2 + 1e-9


def test_seg_affine_applies_one_map_to_image_mask_points():
    img, msk = dot_image(64, 64, xy=(20.0, 40.0))
    tfm = SegAffine(degrees=45, scale=(0.8, 1.2), flip_p=0.5, translate=0.1, seed=1)
    x, y, p = tfm((TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)),
                   TensorPoint(torch.tensor([[20.0, 40.0]]))), split_idx=0)
    assert isinstance(x, TensorImage) and isinstance(y, TensorMask) and x.shape == (1, 64, 64)
    pt = p.numpy()[0]
    assert np.linalg.norm(centroid(x.numpy()[0]) - pt) < 0.5
    assert np.linalg.norm(centroid(y.numpy() == 3) - pt) < 0.75
    again = SegAffine(degrees=45, scale=(0.8, 1.2), flip_p=0.5, translate=0.1, seed=1)(
        (TensorImage(torch.from_numpy(img)[None]),), split_idx=0)
    assert torch.equal(again[0], x)


def test_augmentation_only_on_training_split():
    img, msk = dot_image(64, 64)
    b = (TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)))
    for tfm in (SegAffine(degrees=45, seed=0), IntensityAug(seed=0)):
        out = tfm(b, split_idx=1)
        assert torch.equal(out[0], b[0]) and torch.equal(out[1], b[1])
        assert not torch.equal(tfm(b, split_idx=0)[0], b[0])


def test_elastic_keeps_labels_and_size():
    img, msk = dot_image(64, 64, xy=(32.0, 32.0), r=10)
    tfm = SegAffine(degrees=0, scale=(1, 1), translate=0, elastic=3.0, elastic_sigma=6.0, seed=0)
    x, y = tfm((TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk))), split_idx=0)
    assert y.shape == (64, 64) and set(np.unique(y.numpy())) <= {0, 3}
    assert 0 < (y.numpy() != msk).mean() < 0.1


def test_normalisation():
    x = np.random.default_rng(0).gamma(2.0, 50.0, size=(40, 40)).astype(np.float32)
    x[0, 0] = 1e6  # an outlier the clip must absorb
    z = clip_zscore(x)
    assert abs(z.mean()) < 1e-4 and abs(z.std() - 1) < 1e-3 and z.max() < 10
    q = median_iqr(x)
    assert abs(np.median(q)) < 1e-5
    np.testing.assert_allclose(normalise(x, "iqr"), q)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(x, "minmax")


def test_clutter_paints_background_only_on_training():
    img, msk = dot_image(64, 64, xy=(32.0, 32.0), r=8)
    b = (TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)))
    tfm = ClutterAug(n=10, radius=(3, 8), p=1.0, seed=0)
    x, y = tfm(b, split_idx=0)
    changed = (x.numpy()[0] != img)
    assert changed.any() and not changed[msk > 0].any()
    assert torch.equal(y, b[1])
    x1, _ = tfm(b, split_idx=1)
    assert torch.equal(x1, b[0])


def test_remap_labels_moves_one_region_and_keeps_the_rest():
    img, msk = dot_image(64, 64, xy=(32.0, 32.0), r=10)
    img = img + np.random.default_rng(0).normal(0, 0.1, img.shape).astype(np.float32)
    ones, zeros = np.ones(6), np.zeros(6)
    np.testing.assert_allclose(remap_labels(img, msk, ones, zeros), img, atol=1e-5)  # identity parameters
    shift = zeros.copy()
    shift[3] = 2.0
    out = remap_labels(img, msk, ones, shift, sigma=1.0)
    inner = (np.hypot(*np.mgrid[0:64, 0:64] - 32.0) < 6)
    far = (np.hypot(*np.mgrid[0:64, 0:64] - 32.0) > 16)
    np.testing.assert_allclose(out[inner] - img[inner], 2.0, atol=1e-3)
    np.testing.assert_allclose(out[far], img[far], atol=1e-3)
    gain = ones.copy()
    gain[3] = 0.0  # a zero gain flattens the region to its mean
    flat = remap_labels(img, msk, gain, zeros, sigma=0.0)
    assert flat[msk == 3].std() < 1e-5 and flat[msk == 3].mean() == pytest.approx(img[msk == 3].mean(), abs=1e-5)


def test_label_intensity_aug_is_seeded_keeps_the_mask_and_skips_validation():
    img, msk = dot_image(64, 64, xy=(30.0, 34.0), r=9)
    b = (TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)))
    x, y = LabelIntensityAug(p=1.0, seed=5)(b, split_idx=0)
    x2, _ = LabelIntensityAug(p=1.0, seed=5)(b, split_idx=0)
    x3, _ = LabelIntensityAug(p=1.0, seed=6)(b, split_idx=0)
    assert torch.equal(y, b[1]) and x.shape == b[0].shape
    assert torch.equal(x, x2) and not torch.equal(x, x3)
    assert not torch.equal(x, b[0])
    xv, _ = LabelIntensityAug(p=1.0, seed=5)(b, split_idx=1)
    assert torch.equal(xv, b[0])


def test_bias_field_and_degrade():
    assert np.allclose(bias_field((20, 30), np.zeros((3, 3))), 1.0)
    c = np.zeros((3, 3))
    c[0, 1] = 0.5  # a left-right ramp
    f = bias_field((20, 30), c)
    assert f.shape == (20, 30) and f[:, -1].mean() > f[:, 0].mean()
    np.testing.assert_allclose(f[:, 0], np.exp(-0.5), rtol=1e-5)
    img, _ = dot_image(64, 64, xy=(32.0, 32.0), r=10)
    np.testing.assert_array_equal(degrade(img, 1.0), img)
    d = degrade(np.stack([img, img]), 3.0)
    assert d.shape == (2, 64, 64) and abs(d.mean() - img.mean()) < 0.02
    soft = lambda a: ((a > 0.05) & (a < 0.95)).sum()  # a coarser acquisition blurs the disc's edge
    assert soft(d[0]) > soft(img) + 20


def test_intensity_aug_with_bias_and_lowres_is_seeded():
    img, msk = dot_image(64, 64, xy=(32.0, 32.0), r=10)
    b = (TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)))
    kw = dict(bias=0.5, lowres=(1.5, 2.5), lowres_p=1.0, noise=0.0, seed=3)
    x, y = IntensityAug(**kw)(b, split_idx=0)
    x2, _ = IntensityAug(**kw)(b, split_idx=0)
    assert torch.equal(x, x2) and torch.equal(y, b[1]) and x.shape == (1, 64, 64)
    assert abs(float(x.mean())) < 0.01  # still about a z-scored image (contrast scales the SD)


def test_clutter_inside_a_label_paints_only_there():
    img, msk = dot_image(64, 64, xy=(32.0, 32.0), r=12)
    msk = np.where(msk > 0, 1, 0).astype(np.uint8)  # an LV blood pool
    b = (TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)))
    x, y = ClutterAug(n=4, radius=(1.5, 4), labels=(1,), level=(5, 40), p=1.0, seed=0)(b, split_idx=0)
    changed = x.numpy()[0] != img
    assert changed.any() and not changed[msk == 0].any() and torch.equal(y, b[1])
    assert x.numpy()[0][changed].max() < 1.0  # dark spots on the bright pool


def ring_heart(h=64, w=64, r_lv=12, r_myo=17):
    """A bright LV disc (label 1) inside a darker myocardial ring (label 2) on a black background."""
    d = np.hypot(*(np.mgrid[0:h, 0:w] - np.array([h / 2, w / 2])[:, None, None]))
    msk = np.where(d <= r_lv, 1, np.where(d <= r_myo, 2, 0)).astype(np.uint8)
    img = np.select([msk == 1, msk == 2], [1.0, 0.3], 0.0).astype(np.float32)
    return img, msk, d


def test_thicken_wall_moves_the_endocardium_inwards_image_and_mask_alike():
    img, msk, d = ring_heart()
    x0, m0 = thicken_wall(img[None], msk, 0.0)
    assert np.array_equal(m0, msk) and np.array_equal(x0[0], img)  # frac 0: unchanged
    x, m = thicken_wall(img[None], msk, 0.5)
    assert x.shape == (1, 64, 64) and m.dtype == msk.dtype
    lv = m == 1
    assert 0.15 < lv.sum() / (msk == 1).sum() < 0.4  # radius about halved (12 -> ~6-7 px)
    assert np.array_equal(m[msk != 1], msk[msk != 1])  # only the cavity changes
    rim = (msk == 1) & (m == 2)
    np.testing.assert_allclose(x[0][rim & (d < 10)], 0.3, atol=0.05)  # the new wall looks like the wall
    np.testing.assert_array_equal(x[0][msk != 1], img[msk != 1])
    assert x[0][d < 3].mean() == pytest.approx(1.0, abs=1e-3)  # the cavity's centre stays blood
    no_myo = np.where(msk == 2, 0, msk).astype(np.uint8)  # nothing to grow from: unchanged
    assert np.array_equal(thicken_wall(img[None], no_myo, 0.5)[1], no_myo)


def test_wall_aug_is_seeded_changes_the_mask_and_skips_validation():
    img, msk, _ = ring_heart()
    b = (TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)))
    x, y = WallAug(frac=(0.3, 0.5), p=1.0, seed=1)(b, split_idx=0)
    x2, y2 = WallAug(frac=(0.3, 0.5), p=1.0, seed=1)(b, split_idx=0)
    assert torch.equal(x, x2) and torch.equal(y, y2) and isinstance(y, TensorMask)
    assert (y == 1).sum() < (b[1] == 1).sum() and x.shape == b[0].shape
    xv, yv = WallAug(p=1.0, seed=1)(b, split_idx=1)
    assert torch.equal(xv, b[0]) and torch.equal(yv, b[1])
    xs, ys = WallAug(p=0.0, seed=1)(b, split_idx=0)
    assert torch.equal(ys, b[1])


def test_seg_block_adds_the_wall_aug_only_when_asked():
    from cmrlib.data import seg_block

    with_wall, without = ([type(t).__name__ for t in b.item_tfms] for b in (seg_block(wall={"p": 0.5}), seg_block()))
    assert "WallAug" in with_wall and "WallAug" not in without


def test_heart_crop_keeps_the_heart_in_a_seeded_window_on_training_only():
    """A training window of `size` px round the labelled structures (image and mask cut alike, the heart inside for
    any jitter up to a quarter of the window), the same window for a seed, whole frames for validation and a random
    window where nothing is labelled; the segmentation feed crops after every other augmentation."""
    from cmrlib.data import seg_block

    img, msk = dot_image(h=128, w=128, xy=(90.0, 40.0), r=10)
    b = (TensorImage(torch.from_numpy(img)[None]), TensorMask(torch.from_numpy(msk)))
    for seed in range(5):
        x, y = HeartCrop(size=64, seed=seed)(b, split_idx=0)
        assert x.shape == (1, 64, 64) and y.shape == (64, 64) and isinstance(y, TensorMask)
        assert int((y > 0).sum()) == int((b[1] > 0).sum())  # the whole disc inside
        assert np.array_equal((x[0].numpy() > 0.5) * 3, y.numpy())  # image and mask cut alike
    again = HeartCrop(size=64, seed=3)(b, split_idx=0)
    assert torch.equal(again[0], HeartCrop(size=64, seed=3)(b, split_idx=0)[0])
    xv, yv = HeartCrop(size=64, seed=0)(b, split_idx=1)
    assert torch.equal(xv, b[0]) and torch.equal(yv, b[1])
    empty = (b[0], TensorMask(torch.zeros_like(b[1])))
    assert HeartCrop(size=64, seed=0)(empty, split_idx=0)[1].shape == (64, 64)
    tfms = sorted(seg_block(aug={}, wall={}, crop={"size": 64}).item_tfms, key=lambda t: t.order)
    assert type(tfms[-1]).__name__ == "HeartCrop"
