"""MVnet: standardisation geometry (exact inverse, orientation), perturbation, datasets, pipeline shapes, metrics."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib.models.regress import SoftArgmax, WeightsUnavailable, point_regressor
from cmrlib.methods.mvnet.data import PointFrames, Track
from cmrlib.methods.mvnet.evaluate import (choose_inference, clinical, evaluate, observer_frames,
                                           pooled_displacement_error, spatial_errors)
from cmrlib.methods.mvnet.geometry import (S1_SIZE, STD_RES, STD_SIZE, MVnetError, from_unit, perturb_points,
                                           stage1_geometry, standardise, to_unit)
from cmrlib.methods.mvnet.learner import train_stage
from cmrlib.methods.mvnet.predict import MVnet, smooth_track, tta_shifts

torch.set_num_threads(1)


def toy_track(angle: float = 20.0, mirror: bool = False, spacing=(1.4, 1.4), shape=(96, 112), n: int = 12,
              mapse_mm: float = 12.0, seed: int = 0, start: int = 0) -> Track:
    """A valve of 2 points 26 mm apart moving toward an apex, with a bright LV ellipse: known geometry.

    start: the cine begins `start` frames after end-diastole (ED is then frame (n - start) % n)."""
    g = np.random.default_rng(seed)
    h, w = shape
    sy, sx = spacing
    t = np.radians(angle)
    u = np.array([np.cos(t), np.sin(t)])  # valve direction, point 0 -> point 1 (mm)
    nrm = np.array([-u[1], u[0]]) * (-1 if mirror else 1)  # toward the apex (mm)
    c = np.array([w * sx * 0.5, h * sy * 0.4])
    disp = mapse_mm * np.sin(np.pi * np.arange(n) / n) ** 2  # 0 at ED, max mid-cycle
    pts = np.stack([[c - 13 * u + d * nrm, c + 13 * u + d * nrm] for d in disp]) / (sx, sy)
    yy, xx = np.mgrid[:h, :w]
    frames = []
    for d in disp:
        ctr = c + (d + 30) * nrm
        q = np.stack([xx * sx - ctr[0], yy * sy - ctr[1]], -1)
        a, b = q @ u / 15.0, q @ nrm / 32.0
        frames.append(np.where(a**2 + b**2 < 1, 200.0, 40.0) + g.normal(0, 5, (h, w)))
    px, pts = np.roll(np.array(frames, np.float32), -start, 0), np.roll(pts.astype(np.float32), -start, 0)
    return Track(px, spacing, pts, np.arange(n) * 40.0, (n - start) % n, f"s{seed}", "4CH")


GEOMS = [(a, m, sp, sh) for a, m, sp, sh in [(0, False, (1.4, 1.4), (96, 112)), (37, True, (0.9, 0.9), (160, 140)),
                                              (-120, False, (1.82, 1.82), (80, 80)), (175, True, (1.25, 1.25), (90, 128)),
                                              (90, False, (0.7, 0.7), (200, 180))]]


@pytest.mark.parametrize("angle,mirror,spacing,shape", GEOMS)
def test_standardise_round_trip(angle, mirror, spacing, shape):
    tr = toy_track(angle, mirror, spacing, shape)
    g = standardise(tr.points, spacing)
    p = tr.points.reshape(-1, 2)
    assert np.abs(g.inverse_points(g.points(p)) - p).max() < 0.01
    q = np.random.default_rng(1).uniform(0, [STD_SIZE[1], STD_SIZE[0]], (50, 2))  # predictions in the crop
    assert np.abs(g.points(g.inverse_points(q)) - q).max() < 0.01
    # the crop is 0.75 mm/px: a 26 mm valve is 26 / 0.75 px long
    v = g.points(tr.points[0])
    assert np.hypot(*(v[1] - v[0])) == pytest.approx(26 / STD_RES, rel=1e-4)


@pytest.mark.parametrize("angle,mirror,spacing,shape", GEOMS)
@pytest.mark.parametrize("start", [0, 5])
def test_standardise_orientation(angle, mirror, spacing, shape, start):
    tr = toy_track(angle, mirror, spacing, shape, start=start)
    g = standardise(tr.points, spacing, ed=tr.ed)
    s = g.points(tr.points)  # (T,2,2) in the crop
    h, w = STD_SIZE
    e = tr.ed
    assert s[e, 0, 0] < s[e, 1, 0]  # anterior/lateral left
    assert abs(s[e, 0, 1] - s[e, 1, 1]) < 1e-3  # valve horizontal at end-diastole
    np.testing.assert_allclose(s[e].mean(0), [(w - 1) / 2, (h - 1) / 2], atol=1e-3)  # centred
    mid = s[:, :, 1].mean(1)
    assert (mid >= mid[e] - 1e-3).all() and mid.max() > mid[e] + 5  # apex down: every frame below ED
    # the image follows: the LV (bright) lies below the valve in the crop
    img = g.image(tr.pixels[e])
    cx = int(round((w - 1) / 2))
    assert img[int(h * 0.8), cx] > 150 and img[int(h * 0.2), cx] < 100


def test_image_and_points_share_geometry():
    tr = toy_track(-33, True, (1.1, 1.1), (120, 120))
    img = np.zeros((120, 120), np.float32)
    x, y = np.round(tr.points[3, 1]).astype(int)
    img[y - 1:y + 2, x - 1:x + 2] = 1.0  # a blob centred on an integer pixel
    g = standardise(tr.points, tr.spacing)
    out = g.image(img)
    rr, cc = np.mgrid[:out.shape[0], :out.shape[1]]
    centroid = [(cc * out).sum() / out.sum(), (rr * out).sum() / out.sum()]
    np.testing.assert_allclose(g.points(np.array([x, y], np.float32)), centroid, atol=0.05)


def test_standardise_rejects_bad_input():
    tr = toy_track()
    with pytest.raises(MVnetError, match="anisotropic"):
        standardise(tr.points, (1.0, 1.5))
    with pytest.raises(MVnetError, match="valve line"):
        standardise(np.zeros((3, 2, 2)), (1.0, 1.0))


def test_units_round_trip():
    p = np.random.default_rng(0).uniform(0, 160, (10, 2)).astype(np.float32)
    np.testing.assert_allclose(from_unit(to_unit(p, S1_SIZE), S1_SIZE), p, atol=1e-4)
    np.testing.assert_allclose(to_unit(np.array([[(162 - 1) / 2, (118 - 1) / 2]]), STD_SIZE), 0, atol=1e-6)


def test_perturbation_is_seeded():
    pts = toy_track().points
    a, b = perturb_points(pts, (1.5, 1.0), 3.0, 7), perturb_points(pts, (1.5, 1.0), 3.0, 7)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, perturb_points(pts, (1.5, 1.0), 3.0, 8))
    big = perturb_points(np.zeros((4000, 2, 2)), (1.5, 1.0), 3.0, 0)
    np.testing.assert_allclose(big.reshape(-1, 2).std(0) * (1.0, 1.5), [3.0, 3.0], rtol=0.05)  # sd in mm


def test_point_frames_targets_and_determinism():
    tr = [toy_track(15, seed=1), toy_track(-40, True, seed=2)]
    ds = PointFrames(tr, stage=2, perturb_mm=0.0)
    x, y = ds[0]
    assert x.shape == (1, *STD_SIZE) and y.shape == (4,)
    u = y.view(2, 2).numpy()  # frame 0, exact points: the valve is centred and horizontal
    np.testing.assert_allclose(u[:, 1], 0, atol=1e-5)
    assert u[0, 0] < 0 < u[1, 0]
    v1 = PointFrames(tr, stage=2, perturb_mm=3.0, seed=5, fixed=True)
    v2 = PointFrames(tr, stage=2, perturb_mm=3.0, seed=5, fixed=True)
    for k in (0, 7, 20):
        torch.testing.assert_close(v1[k], v2[k])
    assert not torch.equal(v1[3][1], PointFrames(tr, stage=2, perturb_mm=3.0, seed=6, fixed=True)[3][1])
    # stage-1 targets come back to the original points through the fitted geometry
    s1 = PointFrames(tr, stage=1)
    g = stage1_geometry(tr[0].pixels.shape[1:])
    np.testing.assert_allclose(g.inverse_points(from_unit(s1[2][1].view(2, 2).numpy(), S1_SIZE)), tr[0].points[2],
                               atol=1e-3)
    assert s1[2][0].shape == (1, *S1_SIZE)


def test_regressor_shapes_and_offline_weights():
    x = torch.randn(3, 1, *STD_SIZE)
    for arch in ("tiny", "resnet18"):
        assert point_regressor(arch).eval()(x).shape == (3, 4)
    with pytest.raises(WeightsUnavailable):
        point_regressor("tiny", pretrained=True)
    with pytest.raises(ValueError, match="unknown"):
        point_regressor("vgg")


def test_local_softargmax_removes_centre_pull():
    """A sharp peak over a small uniform floor: the whole-map expectation is pulled toward the centre, the local one not."""
    h, w = 15, 21
    sa = SoftArgmax(1, 1, 1, window=2)
    with torch.no_grad():
        sa.conv.weight.zero_(), sa.conv.bias.zero_(), sa.skip.weight.fill_(1.0), sa.skip.bias.zero_()
    s = torch.zeros(1, 1, h, w)
    s[0, 0, 12, 3] = 8.0  # a peak near the lower-left corner; its 5x5 window lies inside the map (symmetric floor)
    f = torch.zeros(1, 1, 2, 3)
    local = torch.stack([torch.linspace(-1, 1, w)[3], torch.linspace(-1, 1, h)[12]])
    sa.eval()
    torch.testing.assert_close(sa(f, s)[0], local)
    sa.train()  # training keeps the whole map: differentiable everywhere, and pulled toward (0, 0)
    g = sa(f, s)[0]
    assert (g.abs() < local.abs() - 0.01).all()
    sa.window = None
    torch.testing.assert_close(sa.eval()(f, s), g[None])
    sa.window = 2  # a flat map (no confident peak) keeps the whole-map expectation
    s[0, 0, 12, 3] = 0.5
    torch.testing.assert_close(sa.eval()(f, s), sa.train()(f, s))


def test_stage2_model_gets_the_window():
    from cmrlib.methods.mvnet.learner import MVConfig

    cfg = MVConfig(head="softargmax", window2=2)
    assert cfg.model(1).head.window is None and cfg.model(2).head.window == 2


def test_pipeline_shapes():
    torch.manual_seed(0)
    tr = toy_track(n=9)
    net = MVnet(point_regressor("tiny", widths=(8, 8, 16, 16)), point_regressor("tiny", widths=(8, 8, 16, 16)), "4CH")
    out = net.track(tr.pixels, tr.spacing)
    assert list(out) == ["1", "1+2", "1+2+2"]
    for p in out.values():
        assert p.shape == (9, 2, 2) and np.isfinite(p).all()


def test_train_stage_learns_its_training_tracks():
    """Fifteen epochs on three toy cines bring the point loss on them far below the untrained network's."""
    tr = [toy_track(a, seed=i, n=6) for i, a in enumerate((0, 30, -30))]

    def trained(epochs: int) -> float:
        torch.manual_seed(0)
        learn = train_stage(tr, tr, 1, point_regressor("tiny", widths=(8, 8, 16, 16)), epochs=epochs, bs=6,
                            lr=3e-3, schedule="one_cycle", quiet=True)
        with learn.no_bar():
            return float(learn.validate()[0])

    before, after = trained(0), trained(15)
    assert np.isfinite(after) and after < before / 3


def test_metrics_zero_for_perfect_tracks_and_clinical_consistent():
    trs = [toy_track(a, seed=i) for i, a in enumerate((10, -50))]
    trs[1].view = "2CH"
    for t in trs:
        t.subject = "s0"
    df = spatial_errors(trs[0].points, trs[0].points, trs[0].spacing)
    assert np.allclose(df[["err_mm", "angle_deg", "disp_err_mm"]], 0, atol=1e-5)
    np.testing.assert_allclose(df["disp_ref_mm"].max(), 12.0 * np.sin(np.pi * 6 / 12) ** 2, rtol=1e-4)
    preds = {t.view: [{"1": t.points + 0.5, "1+2+2": t.points}] for t in trs}
    frames, subj = evaluate(preds, {t.view: [t] for t in trs}, {"obsA2": {t.view: [t.points] for t in trs}})
    assert len(subj) == 1 and set(frames["stage"]) == {"1", "1+2+2"}
    r = subj.iloc[0]
    assert r["MAPSE_ref"] == pytest.approx(12.0, rel=1e-3)
    assert r["MAPSE_1+2+2"] == pytest.approx(r["MAPSE_ref"]) and r["e_prime_obsA2"] == pytest.approx(r["e_prime_ref"])
    c = clinical({"4CH": (trs[0].points, trs[0])}, window=None)
    assert c["MAPSE"] == pytest.approx(12.0, rel=1e-3) and c["e_prime"] > 0


def test_observer_frames_and_pooled_error():
    trs = [toy_track(a, seed=i) for i, a in enumerate((10, -50))]
    lift = [t.points + np.array([0.0, 0.5]) / t.spacing[0] for t in trs]  # 0.5 mm down: no displacement change
    f = observer_frames({"same": {"4CH": [t.points for t in trs]}, "shifted": {"4CH": lift}}, {"4CH": trs})
    assert set(f["stage"]) == {"same", "shifted"} and len(f) == 2 * sum(len(t.points) for t in trs)
    pooled = pooled_displacement_error(f).set_index("stage")
    assert pooled.loc["same", "disp_err_mean_mm"] == pytest.approx(0, abs=1e-6)
    assert pooled.loc["shifted", "disp_err_sd_mm"] == pytest.approx(0, abs=1e-5)
    assert f.loc[f["stage"] == "shifted", "err_mm"].to_numpy() == pytest.approx(0.5, rel=1e-4)


def test_smooth_track_keeps_motion_and_removes_frame_noise():
    tr = toy_track(n=30)
    noisy = tr.points + np.random.default_rng(0).normal(0, 0.5, tr.points.shape).astype(np.float32)
    sm = smooth_track(noisy, 5)
    assert sm.shape == noisy.shape and sm.dtype == noisy.dtype
    assert np.abs(smooth_track(tr.points, 5) - tr.points).max() < 0.05 * np.ptp(tr.points[:, :, 1])  # motion kept
    assert np.std(sm - tr.points) < 0.8 * np.std(noisy - tr.points)  # frame-to-frame noise reduced (SG 5: x0.70)
    assert smooth_track(noisy, None) is noisy
    np.testing.assert_array_equal(smooth_track(noisy[:4], 5), noisy[:4])  # window longer than the cine: unchanged


class NoisyOracle:
    """A stand-in tracker: the reference plus fixed per-frame noise (halved by test-time crops), smoothed like
    `MVnet` by its `smooth`."""

    smooth, tta = None, None

    def track_cine(self, t: Track) -> dict[str, np.ndarray]:
        noise = np.random.default_rng(int(t.subject[1:])).normal(0, 0.8, t.points.shape).astype(np.float32)
        p = smooth_track(t.points + noise * (0.5 if self.tta else 1.0), self.smooth)
        return {"1": p, "1+2+2": p}


def test_choose_inference_picks_on_validation_and_sets_it():
    oracle = NoisyOracle()
    valid = {"4CH": [toy_track(a, seed=i, n=30) for i, a in enumerate((0, 40))]}
    best, tab = choose_inference({"4CH": oracle}, valid, windows=(None, 5, 9), ttas=(None, 3.0))
    assert list(tab["smooth"]) == [None, 5, 9] * 2 and list(tab["tta"]) == [None] * 3 + [3.0] * 3
    i = int(tab["criterion_mm"].idxmin())
    assert best == {"smooth": tab.loc[i, "smooth"], "tta": 3.0} and (oracle.smooth, oracle.tta) == (best["smooth"], 3.0)
    np.testing.assert_allclose(tab["criterion_mm"], tab["disp_err_mean_mm"].abs() + tab["disp_err_sd_mm"])
    assert tab.loc[1, "criterion_mm"] < tab.loc[0, "criterion_mm"]  # smoothing beats raw per-frame noise


class BlobCentroids(torch.nn.Module):
    """An exactly shift-equivariant stand-in for stage 2: the centroid of the bright pixels in each half of the crop
    (thresholded halfway between the crop's min and max, so intensity normalisation does not matter)."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))  # `MVnet` reads the device from the parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
        m = (x - (lo + hi) / 2).clamp(min=0)[:, 0]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=x.dtype), torch.arange(w, dtype=x.dtype), indexing="ij")
        out = []
        for half in (xs < w / 2, xs >= w / 2):
            mh = m * half
            c = torch.stack([(mh * xs).sum((1, 2)), (mh * ys).sum((1, 2))], -1) / mh.sum((1, 2))[:, None]
            out.append((c - c.new_tensor([(w - 1) / 2, (h - 1) / 2])) / c.new_tensor([w / 2, h / 2]))
        return torch.cat(out, 1)


def blob_track(n: int = 6) -> Track:
    """Two Gaussian blobs on a zero background at a toy track's points (border fill = background)."""
    tr = toy_track(25, n=n)
    yy, xx = np.mgrid[: tr.pixels.shape[1], : tr.pixels.shape[2]]
    px = [sum(np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5 ** 2)) for x, y in f) * 100 for f in tr.points]
    return Track(np.array(px, np.float32), tr.spacing, tr.points, tr.frame_times, 0, "s0", "4CH")


def test_tta_averages_back_to_the_single_crop_for_an_equivariant_model():
    assert tta_shifts(None) == ((0.0, 0.0),) and len(tta_shifts(3)) == 5 and np.sum(tta_shifts(3), 0).tolist() == [0, 0]
    tr, model = blob_track(), BlobCentroids()
    net = MVnet(model, model, "4CH")
    g = standardise(tr.points, tr.spacing)
    one, avg = net._predict(model, tr.pixels, g), net._predict(model, tr.pixels, g, tta_shifts(3))
    assert np.abs(avg - one).max() < 0.01  # each shifted crop maps back to the same points (OpenCV warps at 1/32 px)
    assert np.abs(avg - tr.points).max() < 0.1  # and those are the blob centres
    net.tta = 3.0
    out = net.track(tr.pixels, tr.spacing)
    assert np.abs(out["1+2+2"] - tr.points).max() < 0.1


def test_fit_or_load_reuses_a_tracker_trained_with_the_same_settings(tmp_path):
    from cmrlib.methods.mvnet.learner import MVConfig, fit_or_load

    tracks = [toy_track(a, n=4) for a in (10, 20, 30, 40)]
    for i, t in enumerate(tracks):
        t.subject = f"s{i}"
    cfg = MVConfig(widths=(8, 8, 16, 16), epochs1=1, epochs2=1, bs=4, lr=1e-3, frames_per_cine=2)
    first, log = fit_or_load(tracks[:3], tracks[3:], cfg, "4CH", tmp_path, quiet=True)
    again, log2 = fit_or_load(tracks[:3], tracks[3:], cfg, "4CH", tmp_path, quiet=True)
    pd.testing.assert_frame_equal(log, log2)
    a, b = first.track_cine(tracks[3]), again.track_cine(tracks[3])
    np.testing.assert_allclose(a["1+2+2"], b["1+2+2"], atol=1e-5)
    stamp = (tmp_path / "A_4CH_stage1.model" / "weights.safetensors").stat().st_mtime_ns
    fit_or_load(tracks[:3], tracks[3:], cfg, "4CH", tmp_path, quiet=True, retrain=True)
    assert (tmp_path / "A_4CH_stage1.model" / "weights.safetensors").stat().st_mtime_ns != stamp
    stamp = (tmp_path / "A_4CH_stage1.model" / "weights.safetensors").stat().st_mtime_ns
    fit_or_load(tracks[:3], tracks[3:], MVConfig(**{**cfg.__dict__, "epochs2": 2}), "4CH", tmp_path, quiet=True)
    assert (tmp_path / "A_4CH_stage1.model" / "weights.safetensors").stat().st_mtime_ns != stamp  # other settings: trained again


def test_pseudo_reference_puts_the_lateral_hinge_first_and_needs_lv_and_la_at_every_frame():
    from cmrlib.labels import LA, LV, MYO, RV
    from cmrlib.methods.mvnet.evaluate import pseudo_reference

    lab = np.zeros((4, 60, 60), np.uint8)
    lab[:, 30:55, 20:40] = LV  # the LA sits on the LV, the RV beside it on the right: the septal hinge is the right one
    lab[:, 12:30, 22:38] = LA
    lab[:, 30:55, 44:56] = RV
    for t in range(4):
        lab[t, 30:30 + t, 20:40] = 0  # the valve line moves down over the frames
    ref = pseudo_reference(lab, (1.0, 1.0))
    assert ref.shape == (4, 2, 2) and np.isfinite(ref).all()
    assert (ref[:, 0, 0] < ref[:, 1, 0]).all()  # x: lateral (left) first, septal (right) second
    mirrored = pseudo_reference(lab[:, :, ::-1], (1.0, 1.0))
    assert (mirrored[:, 0, 0] > mirrored[:, 1, 0]).all()  # the RV on the left: the left hinge is now septal
    assert np.allclose(ref[:, :, 1], mirrored[:, :, 1])
    no_la = lab.copy()
    no_la[2][no_la[2] == LA] = 0
    assert pseudo_reference(no_la, (1.0, 1.0)) is None and pseudo_reference(None, (1.0, 1.0)) is None
    sliver = lab.copy()  # frame 1's LV reaches the LA through a 4-px gap in the myocardium: no annulus
    sliver[1, 30:33, 20:40] = MYO
    sliver[1, 30:33, 28:32] = LV
    unfilled = pseudo_reference(sliver, (1.0, 1.0), fill=False)
    assert np.isnan(unfilled[1]).all() and np.isfinite(unfilled[[0, 2, 3]]).all()
    filled = pseudo_reference(sliver, (1.0, 1.0))
    assert np.allclose(filled[1], (filled[0] + filled[2]) / 2)
