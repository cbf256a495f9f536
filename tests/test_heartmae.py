"""HeartMAE: the spatiotemporal MAE's tokens, masks and weighted loss, the optical-flow map, clip views, the
attention-MIL probe and the tables."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib.methods import heartmae as hm
from cmrlib.modelfile import ModelFileError
from cmrlib.record import Cine
from cmrlib.tables import TableError
from cmrlib.models.weights import WeightsUnavailable
from cmrlib.models.mae_st import MAESize, VideoMAE, mae_loss, mask_noise, patchify, target_frames, unpatchify

SMALL = MAESize(size=16, frames=8, patch=4, tubelet=2, dim=16, depth=1, heads=2, dec_dim=16, dec_depth=1,
                dec_heads=2, pred_frames=4)


def test_patchify_inverts_and_orders_tokens_like_the_embedding():
    x = torch.randn(2, SMALL.pred_frames, SMALL.size, SMALL.size)
    assert torch.equal(unpatchify(patchify(x, SMALL), SMALL), x)
    # a token's pixels are the tubelet at its (time, row, column) in the Conv3d embedding's flatten order
    pos = torch.zeros(1, SMALL.pred_frames, SMALL.size, SMALL.size)
    gt, gh, gw = SMALL.grid
    for t in range(gt):
        for i in range(gh):
            for j in range(gw):
                pos[0, t * SMALL.t_pred:(t + 1) * SMALL.t_pred, i * 4:(i + 1) * 4, j * 4:(j + 1) * 4] = (t * gh + i) * gw + j
    tok = patchify(pos, SMALL)
    assert torch.equal(tok[0].mean(-1), torch.arange(gt * gh * gw, dtype=torch.float32))


def test_reconstructed_frames_are_a_fixed_linspace_of_the_clip():
    assert target_frames(MAESize()).tolist() == [0, 2, 4, 6, 8, 10, 12, 15]
    assert MAESize(size=224, frames=24, patch=16, tubelet=4, pred_frames=12).t_pred == 2  # the paper's 24 -> 12
    with pytest.raises(ValueError, match="multiple"):
        MAESize(size=70)


@pytest.mark.parametrize("masking", ["random", "tube"])
def test_masking_keeps_the_ratio_and_tube_masks_every_frame_alike(masking):
    torch.manual_seed(0)
    model = VideoMAE(SMALL)
    x = torch.randn(3, 1, SMALL.frames, SMALL.size, SMALL.size)
    pred, mask = model(x, 0.75, masking)
    n = SMALL.grid[0] * SMALL.grid[1] * SMALL.grid[2]
    assert pred.shape == (3, n, SMALL.t_pred * SMALL.patch ** 2)
    assert (mask.sum(1) == n - round(n * 0.25)).all()
    by_time = mask.reshape(3, SMALL.grid[0], -1)
    assert (by_time == by_time[:, :1]).all() == (masking == "tube")
    noise = mask_noise(2, SMALL, "tube", torch.Generator().manual_seed(1)).reshape(2, SMALL.grid[0], -1)
    assert (noise == noise[:, :1]).all()


def test_weighted_loss_is_eq2_on_the_right_tokens():
    torch.manual_seed(0)
    x = torch.randn(2, 1, SMALL.frames, SMALL.size, SMALL.size)
    n = SMALL.grid[0] * SMALL.grid[1] * SMALL.grid[2]
    pred, mask = torch.randn(2, n, SMALL.t_pred * 16), (torch.rand(2, n) > 0.3).float()
    plain = mae_loss(pred, x, mask, SMALL)
    assert torch.isclose(mae_loss(pred, x, mask, SMALL, torch.zeros(2, 16, 16)), plain)
    assert torch.isclose(mae_loss(pred, x, mask, SMALL, torch.ones(2, 16, 16)), 2 * plain)
    # weight on the top-left 4 x 4 patch only: only that patch's tokens (every time step) change their error
    w = torch.zeros(2, 16, 16)
    w[:, :4, :4] = 1.0
    only = torch.zeros(2, n)
    only.reshape(2, SMALL.grid[0], -1)[:, :, 0] = 1
    expect = mae_loss(pred, x, mask, SMALL) + mae_loss(pred, x, mask * only, SMALL) * (mask * only).sum() / mask.sum()
    assert torch.isclose(mae_loss(pred, x, mask, SMALL, w), expect)


def test_targets_are_the_normalised_pixels_or_each_tokens_own_standardisation():
    from cmrlib.models.mae_st import targets

    torch.manual_seed(0)
    x = 3 + 2 * torch.randn(2, 1, SMALL.frames, SMALL.size, SMALL.size)
    pixels = patchify(x[:, 0, target_frames(SMALL)], SMALL)
    assert torch.equal(targets(x, SMALL, "dataset"), pixels)  # the paper: the input's (training-set) normalisation
    tok = targets(x, SMALL, "token")  # mae_st's norm_pix_loss: each token's mean brightness is not a target
    assert torch.allclose(tok.mean(-1), torch.zeros(2, tok.shape[1]), atol=1e-5)
    assert torch.allclose(tok.std(-1), torch.ones(2, tok.shape[1]), atol=1e-3)
    with pytest.raises(ValueError, match="target normalisation"):
        targets(x, SMALL, "frame")
    with pytest.raises(ValueError, match="target normalisation"):
        hm.learner.HeartMAEConfig(target="frame")


@pytest.mark.parametrize("target", ["dataset", "token"])
def test_reconstruction_keeps_the_visible_patches_and_fills_the_hidden(target):
    torch.manual_seed(0)
    clip = torch.randn(1, SMALL.frames, SMALL.size, SMALL.size)
    truth, shown, recon = hm.figures.reconstruct(VideoMAE(SMALL), clip, 0.75, "random", 0, target)
    hidden = np.isnan(shown)
    assert 0 < hidden.mean() < 1 and np.isfinite(recon).all()
    assert np.array_equal(recon[~hidden], truth[~hidden]) and not np.allclose(recon[hidden], truth[hidden])


def _moving_square(n: int = 20, size: int = 96) -> np.ndarray:
    """A bright square sliding up and down over a still, smoothly textured background."""
    yy, xx = np.mgrid[:size, :size]
    bg = (60 + 20 * np.sin(xx / 5) * np.cos(yy / 7)).astype(np.uint8)
    frames = np.repeat(bg[None], n, 0)
    for t in range(n):
        y = 40 + int(8 * np.sin(2 * np.pi * t / n))
        frames[t, y:y + 14, 20:34] = 220
    return frames


def test_flow_weight_finds_the_moving_structure():
    f = _moving_square()
    w = hm.data.flow_weight(f, sigma_px=2.0)
    assert w.shape == f.shape[1:] and w.min() >= 0 and np.isclose(w.max(), 1.0)
    assert w[32:62, 20:34].mean() > 3 * w[:, 70:].mean()  # the square's travel outweighs the still background
    still = hm.data.flow_weight(np.repeat(f[:1], 20, 0), sigma_px=2.0)
    assert not still.any()
    with pytest.raises(hm.data.CineInputError, match="frames"):
        hm.data.flow_weight(f[:3], sigma_px=2.0)


def test_heart_box_centres_the_crop_on_the_moving_structure_and_pads_past_the_edge():
    f = _moving_square()  # the square travels over rows 32-62 at columns 20-34 of a 96-px still background
    top, left, side = hm.data.heart_box(f, spacing_mm=2.0, side_mm=60.0, sigma_mm=4.0, load=96)
    assert side == 30 and abs(top + side / 2 - 47) <= 4 and abs(left + side / 2 - 27) <= 4
    assert hm.data.heart_box(np.repeat(f[:1], 20, 0), 2.0, 60.0, 4.0, load=96) == (33, 33, 30)  # still: the centre
    sq = hm.data.square_frames(f, 48, (-10, -10, 40))  # a box hanging off the top-left corner: zero-padded there
    assert sq.shape == (20, 48, 48) and not sq[:, :10, :10].any() and sq[:, 20:].any()
    cine = Cine("s", "4CH", f.astype(np.float32), (2.0, 2.0), np.arange(20) * 40.0)
    whole, heart = (hm.data.preprocess_cine(cine, load=32, cycle=20, sigma_mm=4.0, heart_mm=mm)[0] for mm in (None, 60.0))
    assert whole[1].shape == heart[1].shape == (20, 32, 32)
    assert (heart[1] > 200).mean() > 2 * (whole[1] > 200).mean()  # the square fills more of the frame


def test_clip_views_move_frames_and_map_together():
    stack = np.random.default_rng(0).integers(0, 255, (12, 20, 20)).astype(np.uint8)
    weight = np.random.default_rng(1).random((20, 20)).astype(np.float32)
    v = hm.data.ClipView(2, (1, 3, 16), 16, 8, flip_ud=True, flip_lr=True)
    clip, w = v(stack, weight)
    assert clip.shape == (8, 16, 16) and w.shape == (16, 16)
    np.testing.assert_array_equal(clip[0], stack[2, 1:17, 3:19][::-1, ::-1])
    np.testing.assert_array_equal(w, weight[1:17, 3:19][::-1, ::-1])
    views = hm.data.inference_views(30, 72, 64, 16, k=3, t=2)
    assert [(u.start, u.box[1]) for u in views] == [(0, 0), (0, 4), (0, 8), (14, 0), (14, 4), (14, 8)]
    a = hm.data.random_view(30, 72, 64, 16, np.random.default_rng(5))
    assert a == hm.data.random_view(30, 72, 64, 16, np.random.default_rng(5)) and 64 <= a.box[2] <= 72


def test_sax_slices_spread_over_the_middle_of_the_stack():
    assert hm.data.sax_slices(10, 3) == [2, 4, 7]
    assert hm.data.sax_slices(2, 3) == [0, 1]


def test_cineset_round_trips_and_ignores_other_settings(tmp_path):
    cs = hm.data.CineSet(np.zeros((2, 4, 8, 8), np.uint8), np.ones((2, 8, 8), np.float32),
                    pd.DataFrame(dict(view_id=["a", "b"], cine_id=["a", "b"], subject=["s1", "s2"], view=["2CH", "4CH"],
                                      split=["train", "test"])))
    cs.save(tmp_path / "c.npz", {"load": 8})
    back = hm.data.CineSet.load(tmp_path / "c.npz", {"load": 8})
    assert back.table.equals(cs.table) and back.frames.shape == cs.frames.shape and len(back.failures) == 0
    assert hm.data.CineSet.load(tmp_path / "c.npz", {"load": 16}) is None
    assert back.rows("test").tolist() == [1]


def test_the_family_encoders_of_trainable_networks_give_plain_arrays():
    """The networks come straight from training (their weights require grad): extraction records no graph, so
    every encoder the probes read, the random one too, gives plain arrays."""
    torch.manual_seed(0)
    table = pd.DataFrame(dict(view_id=["a", "b"], cine_id=["a", "b"], subject=["s1", "s2"], view="4CH", split="train"))
    cines = hm.data.CineSet(np.full((2, 8, 20, 20), 100, np.uint8), np.ones((2, 20, 20), np.float32), table)
    encoders = hm.features.family_encoders({"HeartMAE": VideoMAE(SMALL)}, VideoMAE(SMALL), 0.4, 0.2, "mean",
                                           "/nonexistent/r3d_18.pth")
    assert set(encoders) == {"HeartMAE", hm.learner.RANDOM}  # no Kinetics weights here: that row is left out
    for enc in encoders.values():
        x = hm.features.extract(enc, cines, SMALL.size, SMALL.frames, k=1, t=1, progress=False)
        assert isinstance(x, np.ndarray) and x.shape == (2, 1, SMALL.dim)


def test_motion_pooling_adds_the_sd_over_time_steps_to_the_token_mean():
    torch.manual_seed(0)
    model = VideoMAE(SMALL).eval()
    x = torch.randn(3, 1, SMALL.frames, SMALL.size, SMALL.size)
    with torch.no_grad():
        mean, both = model.features(x), model.features(x, "mean+motion")
        z = model.encode(x).reshape(3, SMALL.frames // SMALL.tubelet, -1, SMALL.dim).mean(2)
    assert both.shape == (3, 2 * SMALL.dim) and torch.allclose(both[:, :SMALL.dim], mean)
    assert torch.allclose(both[:, SMALL.dim:], z.std(1))
    with pytest.raises(ValueError, match="pool"):
        model.features(x, "max")


def test_padded_attention_bags_give_each_subject_what_a_batch_of_one_gives():
    torch.manual_seed(0)
    pool = hm.heads.GatedABMIL(6, 4)
    a, b = torch.randn(1, 3, 6), torch.randn(1, 5, 6)
    padded = torch.zeros(2, 5, 6)
    padded[0, :3], padded[1] = a[0], b[0]
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    z, att = pool(padded, mask)
    z_a, att_a = pool(a, torch.ones(1, 3, dtype=torch.bool))
    assert torch.allclose(z[0], z_a[0], atol=1e-6) and torch.allclose(att[0, :3], att_a[0], atol=1e-6)
    assert (att[0, 3:] == 0).all() and torch.allclose(att.sum(1), torch.ones(2))


def test_probe_learns_targets_carried_by_the_views():
    rng = np.random.default_rng(0)
    n, v, d = 120, 4, 5
    h = rng.normal(size=(n, v, d)).astype(np.float32)
    mask = np.ones((n, v), bool)
    mask[::3, 3] = False
    y = pd.DataFrame({"ef": 55 + 10 * h[:, :, 0].mean(1), "sick": (h[:, :, 1].mean(1) > 0).astype(float)},
                     index=[f"s{i}" for i in range(n)])
    y.iloc[0, 0] = np.nan  # a missing target contributes nothing
    kinds = {"ef": "reg", "sick": "cls"}
    cfg = hm.heads.ProbeConfig(epochs=40, bs=8, lr=1e-2)
    train, valid, test = np.arange(80), np.arange(80, 100), np.arange(100, 120)
    probe = hm.heads.fit_probe(h, mask, y, kinds, train, valid, cfg)
    out = probe.predict(h[test], mask[test], y.index[test])
    assert np.abs(out["ef"] - y["ef"].iloc[test]).mean() < 0.6 * np.abs(y["ef"].iloc[test] - 55).mean()
    assert ((out["sick"] > 0.5) == (y["sick"].iloc[test] > 0.5)).mean() >= 0.7
    again = hm.heads.fit_probe(h, mask, y, kinds, train, valid, cfg).predict(h[test], mask[test], y.index[test])
    pd.testing.assert_frame_equal(out, again)  # seeded: the same probe twice


def test_bags_group_views_by_subject_with_names():
    table = pd.DataFrame(dict(view_id=["a_2CH", "a_SAX:3", "b_4CH"], subject=["a", "a", "b"]))
    f = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    h, mask, names = hm.features.bags(f, table, ["a", "b"])
    assert h.shape == (2, 4, 4) and mask.sum(1).tolist() == [4, 2]
    assert names[0] == ["a_2CH#0", "a_2CH#1", "a_SAX:3#0", "a_SAX:3#1"]
    np.testing.assert_array_equal(h[1, :2], f[2])


def test_phantom_targets_map_every_truth_in_one_place():
    m = pd.DataFrame(dict(subject=["p1", "p2"], lv_edv_ml=[150.0, 100.0], lv_esv_ml=[60.0, 50.0], lv_sv_ml=[90, 50],
                          lv_ef=[60.0, 50.0], bsa_m2=[2.0, 1.0], mapse_mm=[12, 9], hf_class=["none", "HFrEF"],
                          mr_grade=[0, 2], af=[False, True], hcm=[False, False], mi=[True, False], age=[50, 60],
                          bmi=[25, 30], sbp=[120, 140], dbp=[80, 90], sex=["M", "F"]))
    y, kinds, groups = hm.tasks.phantom_targets(m)
    assert y.loc["p1", "LVEDVi"] == 75.0 and y.loc["p2", "HFrEF"] == 1 and y.loc["p2", "MR"] == 1
    assert y.loc["p1", "sex (male)"] == 1 and kinds["sex (male)"] == "cls" and kinds["LVEF"] == "reg"
    assert groups["MAPSE"] == "cardiac" and groups["AF"] == "conditions" and groups["age"] == "extracardiac"


def test_targets_table_errors_name_the_file(tmp_path):
    bad = tmp_path / "mine.csv"
    bad.write_text("id,lvef\n1,50\n")
    with pytest.raises(TableError, match=r"targets table mine.csv: line 1 \(the header, 2 columns\) lacks the "
                                         r"column\(s\) \['subject'\]"):
        hm.tasks.table_targets(bad)
    good = tmp_path / "t.csv"
    good.write_text("subject,lvef,af\ns1,50,0\ns2,60,1\n")
    y, kinds, groups = hm.tasks.table_targets(good)
    assert kinds == {"lvef": "reg", "af": "cls"} and set(groups.values()) == {"targets"}


def test_missing_video_weights_say_where_and_what(tmp_path):
    with pytest.raises(WeightsUnavailable, match="not available offline: expected .*none.pth"):
        hm.features.kinetics_encoder(tmp_path / "none.pth")


def test_tables_count_wins_and_test_the_pair():
    rng = np.random.default_rng(0)
    truth = pd.DataFrame(rng.normal(50, 10, (30, 6)), columns=["LVEF", "LAEF", "RVEF", "RAEF", "LVM", "age"])
    preds = {m: truth + rng.normal(0, s, truth.shape) for m, s in (("MAE-ViT-B", 4.0), ("HeartMAE", 2.0))}
    reg = hm.evaluate.regression_metrics(preds, truth, truth.std(), n_boot=200, seed=0)
    assert set(reg["task"]) == set(truth.columns) and (reg["MAE_low"] <= reg["MAE"]).all()
    won = hm.evaluate.wins(reg, ["MAE-ViT-B", "HeartMAE"]).set_index("model")
    assert won.at["HeartMAE", "tasks won"] == 6 and won.at["HeartMAE", "of tasks"] == 6
    w = hm.evaluate.wilcoxon(reg)
    assert w["a_better"] == 6 and w["p"] < 0.05
    t1 = hm.evaluate.table1(reg)
    assert list(t1.columns) == ["LVEF", "LAEF", "RVEF", "RAEF"] and "[" in t1.loc["HeartMAE", "LVEF"]


def test_a_store_with_bad_cines_records_them_and_keeps_the_good(tmp_path):
    from cmrlib.record import Cine
    from cmrlib.store import CohortStore
    store = CohortStore(tmp_path / "cohort")
    moving = _moving_square(n=20, size=48)
    good = Cine(subject="s1", view="4CH", pixels=moving.astype(np.float32), spacing=(1.8, 1.8),
                frame_times=np.arange(20) * 40.0)
    pair = Cine(subject="s2", view="4CH", pixels=moving[:2].astype(np.float32), spacing=(1.8, 1.8),
                frame_times=np.arange(2) * 300.0)
    blank = Cine(subject="s3", view="2CH", pixels=np.zeros((20, 48, 48), np.float32), spacing=(1.8, 1.8),
                 frame_times=np.arange(20) * 40.0)
    for c in (good, pair, blank):
        store.write(c)
    cs = hm.data.preprocess_store(store, store.ids(), progress=False, load=32, cycle=16)
    assert cs.table["cine_id"].tolist() == [good.cine_id] and cs.frames.shape == (1, 16, 32, 32)
    reasons = dict(zip(cs.failures["cine_id"], cs.failures["reason"]))
    assert "2 frames" in reasons[pair.cine_id] and "blank" in reasons[blank.cine_id]


def test_kinetics_encoder_reads_a_local_weights_file(tmp_path):
    from torchvision.models.video import r3d_18
    torch.manual_seed(0)
    torch.save(r3d_18(weights=None).state_dict(), tmp_path / "r3d.pth")
    enc = hm.features.kinetics_encoder(tmp_path / "r3d.pth")
    with torch.no_grad():
        assert enc(torch.rand(2, 8, 32, 32)).shape == (2, 512)


def test_a_condition_with_one_class_among_test_subjects_is_a_row_that_says_so():
    subjects = [f"s{i}" for i in range(8)]
    truth = pd.DataFrame({"AF": [0, 1] * 4, "MI": [0] * 8}, index=subjects)
    preds = {"HeartMAE": pd.DataFrame({"AF": np.linspace(0, 1, 8), "MI": np.linspace(0, 1, 8)}, index=subjects)}
    t = hm.evaluate.classification_metrics_table(preds, truth, ["AF", "MI"], n_boot=50).set_index("task")
    assert t.loc["AF", "note"] == "" and 0 <= t.loc["AF", "AUROC"] <= 1
    assert t.loc["MI", "note"].startswith("not testable: 0 positive and 8 negative cases")
    assert np.isnan(t.loc["MI", "AUROC"]) and t.loc["MI", "n"] == 8


def test_the_copy_rule_copies_the_nearest_visible_frame_and_the_mean_rule_the_visible_mean():
    size = MAESize(size=8, frames=4, patch=4, tubelet=1, dim=8, depth=1, heads=1, dec_dim=8, dec_depth=1, dec_heads=1,
                   pred_frames=4)  # grid (4, 2, 2): 16 tokens
    t = torch.arange(16, dtype=torch.float32).view(1, 16, 1).expand(1, 16, 3).clone()
    mask = torch.ones(1, 16)
    mask[0, [0, 5]] = 0  # visible: time 0 place 0, time 1 place 1
    pred = hm.gates.copy_rule(t, mask, size.grid)
    assert pred[0, 8, 0] == 0 and pred[0, 13, 0] == 5  # place 0 from time 0; place 1 (time 3) from time 1
    assert pred[0, 2, 0] == 2.5  # place 2 never visible: the mean of the visible tokens
    assert torch.allclose(hm.gates.mean_rule(t, mask), torch.full_like(t, 2.5))


def test_pretraining_memorises_a_few_clips(tmp_path):
    """The library's own pretraining path (Learner, objective, optimiser, schedule) drives the masked loss on 8
    fixed, noise-free clips far below its start: a broken optimiser, target or mask would not."""
    from fastai.callback.schedule import ParamScheduler

    from cmrlib.methods.heartmae.learner import schedule

    g = np.random.default_rng(0)
    n, t, load = 8, 8, 20
    yy, xx = np.mgrid[:load, :load]
    frames = []
    for _ in range(n):  # a beating bright disc per clip
        cy, cx, r0 = g.uniform(6, 14), g.uniform(6, 14), g.uniform(3, 5)
        frames.append([np.where((yy - cy) ** 2 + (xx - cx) ** 2 < (r0 * (1 + 0.3 * np.sin(2 * np.pi * k / t))) ** 2,
                                200, 40) for k in range(t)])
    table = pd.DataFrame(dict(view_id=[f"v{i}" for i in range(n)], cine_id=[f"c{i}" for i in range(n)],
                              subject=[f"s{i}" for i in range(n)], view="4CH", split="train"))
    cines = hm.data.CineSet(np.asarray(frames, np.uint8), np.zeros((n, load, load), np.float32), table)
    cfg = hm.learner.HeartMAEConfig(size=16, frames=4, patch=4, tubelet=2, dim=64, depth=2, heads=2, dec_dim=64, dec_depth=1,
                            dec_heads=2, pred_frames=2, load=load, min_side=16, bs=8, repeats=1, blr=0.032,
                            target="token")  # 3 visible tokens place no disc, so only per-token targets are learnable
    learn = hm.learner.learner("MAE-ViT-B", cines, cfg, *hm.data.intensity_stats(cines), tmp_path)
    learn.dls.train.dataset.train = False  # the same centre clip of each cine every step
    with learn.no_bar(), learn.no_logging():
        learn.fit(150, cfg.lr, cbs=[ParamScheduler({"lr": schedule(cfg.lr, 0.1)})])
    first, last = learn.recorder.values[0][0], learn.recorder.values[-1][0]
    assert last < 0.35 * first, (first, last)


def test_an_encoder_round_trips_with_its_config_and_a_config_that_does_not_fit_is_refused(tmp_path):
    cfg = hm.learner.HeartMAEConfig(size=16, frames=8, patch=4, tubelet=2, dim=16, depth=1, heads=2, dec_dim=16, dec_depth=1,
                            dec_heads=2, pred_frames=4)
    model = VideoMAE(cfg.shape)
    path = hm.learner.save(model, cfg, tmp_path / "MAE-ViT-B.model", mean=0.2, std=0.1)
    again, cfg2, meta = hm.learner.load(path)
    assert cfg2 == cfg and meta == dict(mean=0.2, std=0.1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    doc = json.loads((path / "model.json").read_text())
    doc["body"]["meta"]["config"]["no_such_setting"] = 1  # a config from another version of the code
    (path / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="MAE-ViT-B.model: its config does not fit HeartMAEConfig"):
        hm.learner.load(path)


def test_expert_baseline_drops_a_measure_no_training_subject_has():
    from cmrlib.methods.heartmae.baselines import logistic_probs

    g = np.random.default_rng(0)
    subjects = [f"s{i}" for i in range(12)]
    y = pd.DataFrame({"af": [0, 1] * 6}, index=subjects, dtype=float)
    x = pd.DataFrame({"lvef": y["af"] * 2 + g.normal(0, 0.5, 12), "laef": np.nan}, index=subjects)
    x.loc["s11", "laef"] = 40.0  # only a test subject has it
    probs, chosen = logistic_probs(x, y, subjects[:8], subjects[8:10], subjects[10:])
    assert list(probs.index) == subjects[10:] and np.isfinite(probs["af"]).all() and "af" in chosen


def test_real_patients_read_out_lvef_by_fold_roles_and_pair_each_encoder_with_the_random_one():
    """The fold's roles label the views; the pooled ridge chooses its strength leaving one non-test patient out and
    scores test only; the table pairs every encoder's out-of-fold errors with the random encoder's."""
    from cmrlib.methods.heartmae import real
    from cmrlib.methods.heartmae.data import CineSet

    subjects = [f"s{i:02d}" for i in range(20)]
    folds = pd.Series([i % 5 for i in range(20)], index=subjects)
    table = pd.DataFrame(dict(view_id=subjects, cine_id=subjects, subject=subjects, view="SAX", split="train"))
    views = real.fold_views(CineSet(np.zeros((20, 2, 4, 4), np.uint8), np.zeros((20, 4, 4), np.float32), table),
                            folds, 0)
    assert set(views.table.loc[folds.to_numpy() == 0, "split"]) == {"test"}
    assert set(views.table.loc[folds.to_numpy() == 1, "split"]) == {"valid"}
    g = np.random.default_rng(0)
    lvef = pd.Series(g.uniform(20, 70, 20), index=subjects)
    informative = pd.DataFrame(dict(a=lvef + g.normal(0, 1, 20), b=g.normal(0, 1, 20)), index=subjects)
    roles = {r: views.table.loc[views.table.split == r, "subject"].tolist() for r in ("train", "valid", "test")}
    test, cv_mae, alpha = real.pooled_lvef(informative, lvef, roles)
    assert list(test.index) == roles["test"] and cv_mae < 5 and alpha in real.ALPHAS
    pred = pd.concat([pd.DataFrame(dict(encoder=name, subject=subjects, reference=lvef.to_numpy(),
                                        predicted=(lvef + shift).to_numpy()))
                      for name, shift in (("random encoder", 10.0), ("ours", 2.0))])
    t = real.lvef_table(pred, "random encoder", 200, 0).set_index("encoder")
    assert t.at["ours", "MAE"] == pytest.approx(2.0) and t.at["ours", "minus_random"] == pytest.approx(-8.0)
    assert t.at["ours", "minus_random_high"] < 0 and t.at["random encoder", "minus_random"] == 0


def _frame_cohort(n: int = 20, windows: int = 8, slices: int = 3, seed: int = 0):
    """Synthetic patients whose LV area curves (three slices, `windows` steps) have a known EF, a feature that is
    the area plus noise and one that is noise only."""
    from cmrlib.methods.heartmae import real

    g = np.random.default_rng(seed)
    subjects = [f"s{i:02d}" for i in range(n)]
    ef = pd.Series(g.uniform(20, 70, n), index=subjects)
    phase = np.cos(2 * np.pi * np.arange(windows) / windows)  # 1 at ED, -1 at ES
    area = np.stack([g.uniform(800, 1500) * (1 - ef[s] / 100 * (1 - phase) / 2) for s in subjects
                     for _ in range(slices)])  # (views, windows)
    table = pd.DataFrame(dict(subject=np.repeat(subjects, slices), view_id=[f"{s}:{z}" for s in subjects
                                                                           for z in range(slices)]))
    rows = real.frame_rows(table, windows, area)
    informative = np.c_[rows.area + g.normal(0, 20, len(rows)), g.normal(0, 1, (len(rows), 3))]
    return subjects, ef, rows, informative, g.normal(0, 1, (len(rows), 4))


def test_frame_resolved_read_out_reads_ef_from_the_predicted_area_curve_of_test_patients_only():
    """A feature that carries the blood-pool area reads EF from each test patient's curve; noise reads about the
    mean; the segmenter's own areas (the ceiling) read it best; changing a test patient's LVEF leaves every fit
    (strength, predictions of the others) as it was."""
    from cmrlib.methods.heartmae import real

    subjects, ef, rows, informative, noise = _frame_cohort()
    roles = {"train": subjects[:12], "valid": subjects[12:16], "test": subjects[16:]}
    test, cv_area, alpha, area_mae = real.frame_lvef(informative, rows, ef, roles)
    assert list(test.index) == roles["test"] and alpha in real.ALPHAS and area_mae < 0.5
    assert np.abs(test - ef[roles["test"]]).mean() < 3
    noisy, *_ = real.frame_lvef(noise, rows, ef, roles)
    assert np.abs(noisy - ef[roles["test"]]).mean() > 5
    ceiling = real.area_lvef(rows, ef, roles)
    assert np.abs(ceiling - ef[roles["test"]]).mean() < 1
    changed = ef.copy()
    changed[roles["test"][0]] = 99.0
    again, cv_again, alpha_again, _ = real.frame_lvef(informative, rows, changed, roles)
    assert alpha_again == alpha and cv_again == cv_area and np.allclose(again, test)


def test_fold_readouts_read_each_representation_its_ways_and_pair_frames_with_pooled():
    """A representation with pooled and frame features gets both read-outs, one with frames only just that one,
    the segmenter's areas always; `readout_gain` pairs the two read-outs of the same patients."""
    from cmrlib.methods.heartmae import real

    subjects, ef, rows, informative, noise = _frame_cohort()
    pooled = pd.DataFrame(dict(a=ef + np.random.default_rng(1).normal(0, 3, len(ef))), index=subjects)
    roles = {"train": subjects[:12], "valid": subjects[12:16], "test": subjects[16:]}
    enc = {"both": real.Encoded(pooled, informative), "frames only": real.Encoded(frames=noise)}
    pred, gate = real.fold_readouts(enc, rows.assign(pos=np.arange(len(rows))), ef, roles, fold=0)
    got = set(map(tuple, pred[["encoder", "readout"]].drop_duplicates().to_numpy()))
    assert got == {("both", real.POOLED), ("both", real.FRAMES), ("frames only", real.FRAMES),
                   (real.AREAS, real.FRAMES)}
    assert set(pred.subject) == set(roles["test"]) and len(gate) == 4
    gain = real.readout_gain(pred, 200, 0).set_index("encoder")
    assert list(gain.index) == ["both"] and gain.at["both", "n"] == len(roles["test"])


def test_real_epochs_are_chosen_per_fold_on_the_non_test_patients_and_scored_as_one_procedure():
    """Each fold keeps the model with the lower cross-validated MAE on its non-test patients (a tie keeps the
    phantom model); the procedure's row reads each fold's test patients from the model that fold chose, whatever
    the test errors are; without a continued model no choice and no row."""
    from cmrlib.methods.heartmae import real

    gate = pd.DataFrame(dict(readout=real.POOLED, fold=[0, 0, 1, 1, 2, 2, 0, 1, 2],
                             encoder=[real.PHANTOM, real.TUNED] * 3 + [real.RANDOM] * 3,
                             cv_MAE=[9.0, 8.0, 7.0, 7.5, 6.0, 6.0, 10.0, 10.0, 10.0]))
    choice = real.epochs_per_fold(gate).set_index("fold")
    assert choice.chosen.tolist() == [real.TUNED, real.PHANTOM, real.PHANTOM]
    subjects = [f"s{i}" for i in range(6)]
    fold = [0, 0, 1, 1, 2, 2]
    lvef = np.array([30.0, 40, 50, 60, 55, 65])
    err = {real.PHANTOM: 1.0, real.TUNED: 20.0, real.RANDOM: 5.0}  # the chosen arm on fold 0 reads test worse
    pred = pd.concat([pd.DataFrame(dict(encoder=e, readout=r, fold=fold, subject=subjects, reference=lvef,
                                        predicted=lvef + d))
                      for e, d in err.items() for r in (real.POOLED, real.FRAMES)], ignore_index=True)
    pretext = pd.DataFrame(dict(model=[real.PHANTOM, real.TUNED] * 3, fold=[0, 0, 1, 1, 2, 2],
                                masked_loss=[0.5, 0.4, 0.5, 0.4, 0.5, 0.4]))
    r = real.real_tables(pred, gate, pretext, 200, 0)
    t = r.table.set_index("encoder")
    assert t.at[real.CHOSEN, "MAE"] == pytest.approx((2 * 20 + 4 * 1) / 6) and t.at[real.CHOSEN, "n"] == 6
    assert real.CHOSEN in set(r.frames.encoder) and real.CHOSEN in set(r.gain.encoder)
    assert r.gate[r.gate.encoder == real.CHOSEN].cv_MAE.tolist() == [8.0, 7.0, 6.0]
    assert r.pretext[r.pretext.model == real.CHOSEN].masked_loss.tolist() == [0.4, 0.5, 0.5]
    alone = real.real_tables(pred[pred.encoder != real.TUNED], gate[gate.encoder != real.TUNED],
                             pretext[pretext.model != real.TUNED], 200, 0)
    assert alone.choice.empty and real.CHOSEN not in set(alone.table.encoder)


def test_split_steps_pools_exactly_as_the_model_and_keeps_each_clip_step_in_time_order():
    """The step means of `extract` give the clip features `VideoMAE.features` gives, and the frame-resolved rows
    follow `step_windows`' order; a window's mean is the frames' mean."""
    from cmrlib.methods.heartmae import real
    from cmrlib.models.mae_st import MAESize, VideoMAE

    torch.manual_seed(0)
    net = VideoMAE(MAESize(size=16, frames=8, pred_frames=4, patch=8, tubelet=4, dim=16, depth=1, heads=2,
                           dec_dim=8, dec_depth=1, dec_heads=2)).eval()
    x = torch.rand(3, 1, 8, 16, 16)
    with torch.no_grad():
        steps = net.step_means(x).numpy()  # (3 clips, 2 steps, 16)
        for pool in ("mean", "mean+motion"):
            _, clips = real.split_steps(steps.reshape(1, 3, -1), 3, 1, 2, pool)
            assert np.allclose(clips[0], net.features(x, pool).numpy(), atol=1e-5)
    frames, _ = real.split_steps(steps.reshape(1, 3, -1), 3, 1, 2, "mean")
    assert np.allclose(frames[0], steps.mean(0), atol=1e-6)
    wins = real.step_windows(30, 72, 64, 16, 4, 3, 2)
    assert wins[0] == (0, 4) and wins[3] == (12, 16) and wins[4] == (14, 18) and wins[-1] == (26, 30)
    assert np.allclose(real.window_means(np.arange(30.0), wins[:1]), [1.5])


def test_ridge_paths_are_the_ridge_fits_on_each_prefix_of_components():
    """The closed form gives what scikit-learn's Ridge fits on the first k principal-component scores, at every
    strength."""
    from sklearn.linear_model import Ridge

    from cmrlib.methods.heartmae import real

    g = np.random.default_rng(0)
    x = g.normal(size=(120, 20))
    y = 3 * x[:, 0] + g.normal(size=120)
    proj = real._projection(12).fit(x[:90])
    z_tr, z_te = proj.transform(x[:90]), proj.transform(x[90:])
    paths = real._ridge_paths(z_tr, y[:90], z_te, [4, 12])
    for i, k in enumerate((4, 12)):
        for j, a in enumerate(real.ALPHAS):
            assert np.allclose(paths[i, j], Ridge(alpha=a).fit(z_tr[:, :k], y[:90]).predict(z_te[:, :k]))
