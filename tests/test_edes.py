"""ED/ES detection: the eq. 4 label curve, the temporal structured loss, wrap-around decoding, cyclic aFD,
padding-invariant model and loss, and the sequence DataLoaders."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cmrlib.methods.edes.curves import decode, frame_diff, label_curve
from cmrlib.methods.edes.data import SeqItem, dataloaders, mid_slice, seq_frames
from cmrlib.methods.edes.learner import TempRegLoss, learner, tsc_loss
from cmrlib.models.tempreg import tempreg_net
from cmrlib.record import Cine

torch.set_num_threads(1)
NAN = float("nan")


def toy_cine(n: int = 20, ed: int = 0, es: int = 7, size: int = 24, view: str = "4CH", stack: int = 0,
             power: float | None = None) -> Cine:
    """A disc whose radius follows the label curve (exponents `power` both ways if given): the smallest synthetic
    cine with a known ED/ES."""
    r = 4 + 5 * (label_curve(n, ed, es) if power is None else label_curve(n, ed, es, power, power))
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    px = np.stack([(np.hypot(yy, xx) < ri).astype(np.float32) for ri in r])
    if stack:
        px = np.repeat(px[:, None], stack, axis=1)
    sp = (1.0, 1.0) if not stack else (8.0, 1.0, 1.0)
    return Cine("toy", "SAX" if stack else view, px, sp, np.arange(n) * 30.0, ed=ed, es=es)


# ---- label curve ----------------------------------------------------------------------------------
def test_label_curve_hand_values():
    y = label_curve(10, 2, 5)  # systole 2->5 (3 frames), diastole 5->12 (7 frames)
    want = [(5 / 7) ** (1 / 3), (6 / 7) ** (1 / 3), 1.0, (2 / 3) ** 3, (1 / 3) ** 3, 0.0,
            (1 / 7) ** (1 / 3), (2 / 7) ** (1 / 3), (3 / 7) ** (1 / 3), (4 / 7) ** (1 / 3)]
    np.testing.assert_allclose(y, want, rtol=1e-6)


@pytest.mark.parametrize("n,ed,es", [(20, 0, 7), (20, 15, 3), (33, 32, 10), (50, 12, 30), (25, 24, 0), (30, 9, 8)])
def test_label_curve_any_start_phase(n, ed, es):
    y = label_curve(n, ed, es)
    assert y.shape == (n,) and y[ed] == 1.0 and y[es] == 0.0
    assert np.argmax(y) == ed and np.argmin(y) == es
    a = (np.arange(n) - ed) % n  # walk the cycle from ED: decreasing to ES, then increasing back
    walk = y[np.argsort(a)]
    k = (es - ed) % n
    assert (np.diff(walk[:k + 1]) < 0).all() and (np.diff(walk[k:]) > 0).all()
    # rolling the cine rolls the curve: no phase is special
    np.testing.assert_allclose(label_curve(n, (ed + 5) % n, (es + 5) % n), np.roll(y, 5), rtol=1e-6)


def test_label_curve_exponents_are_parameters():
    y = label_curve(10, 0, 4, delta=1.0, upsilon=1.0)  # linear both ways
    np.testing.assert_allclose(y[:5], [1, 0.75, 0.5, 0.25, 0], rtol=1e-6)
    np.testing.assert_allclose(y[5:], [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6], rtol=1e-6)
    with pytest.raises(ValueError, match="same frame"):
        label_curve(10, 3, 3)


# ---- temporal structured loss -----------------------------------------------------------------------------
def test_tsc_zero_when_signs_agree():
    y = torch.tensor([[0.0, 0.5, 1.0, 0.2]])
    p = torch.tensor([[0.1, 0.2, 5.0, 0.15]])  # same signs of the differences (last->first too), any magnitudes
    assert tsc_loss(p, y, cyclic=False).item() == 0.0
    assert tsc_loss(p, y, cyclic=True).item() == 0.0
    q = torch.tensor([[0.1, 0.2, 5.0, -1.0]])  # last->first now rises by 1.1 where the label falls
    assert tsc_loss(q, y, cyclic=False).item() == 0.0
    assert tsc_loss(q, y, cyclic=True).item() == pytest.approx(1.1 / 4)


def test_tsc_hand_computed():
    y = torch.tensor([[0.0, 1.0, 2.0]])
    p = torch.tensor([[2.0, 1.0, 0.0]])  # falls where the label rises: 1 + 1 over 2 pairs
    assert tsc_loss(p, y, cyclic=False).item() == pytest.approx(1.0)
    # cyclic adds the pair frame 2 -> frame 0: label falls by 2, prediction rises by 2 -> penalty 2
    assert tsc_loss(p, y, cyclic=True).item() == pytest.approx(4 / 3)
    # a flat label pair is never penalised
    assert tsc_loss(torch.tensor([[0.0, 3.0]]), torch.tensor([[1.0, 1.0]]), cyclic=False).item() == 0.0


def test_tsc_and_mse_ignore_padding():
    y = torch.tensor([[0.0, 1.0, 2.0, NAN, NAN]])
    p1 = torch.tensor([[2.0, 1.0, 0.0, 0.0, 0.0]])
    p2 = torch.tensor([[2.0, 1.0, 0.0, -7.0, 9.0]])
    assert tsc_loss(p1, y).item() == pytest.approx(4 / 3) == pytest.approx(tsc_loss(p2, y).item())
    loss = TempRegLoss(beta=0.5)
    want = ((2 ** 2 + 0 + 2 ** 2) / 3) + 0.5 * 4 / 3
    assert loss(p1, y).item() == pytest.approx(want) and loss(p2, y).item() == pytest.approx(want)


# ---- decoding and cyclic frame distance ----------------------------------------------------------------------------
def test_frame_diff_is_cyclic():
    assert frame_diff(0, 19, 20) == 1 and frame_diff(19, 0, 20) == 1 and frame_diff(3, 13, 20) == 10
    np.testing.assert_array_equal(frame_diff([0, 5, 29], [29, 5, 1], [30, 30, 30]), [1, 0, 2])


@pytest.mark.parametrize("n,ed,es", [(20, 0, 7), (20, 17, 2), (30, 29, 0), (25, 3, 24)])
def test_decode_wraps(n, ed, es):
    assert decode(label_curve(n, ed, es)) == (ed, es)
    assert decode(np.roll(label_curve(n, ed, es), 3)) == ((ed + 3) % n, (es + 3) % n)


def test_decode_smoothing_wraps_around_the_cycle():
    c = np.zeros(12)
    c[[11, 0, 1]] = [0.8, 0.9, 0.8]  # a broad peak at frame 0, across the boundary
    c[6] = 0.95  # a one-frame spike elsewhere
    c[4] = -1.0
    assert decode(c)[0] == 6
    assert decode(c, smooth=3)[0] == 0  # the circular average keeps the peak that straddles frames 11 and 0


# ---- model and loss on variable-length padded batches --------------------------------------------------------------
def _batch(lengths, t_pad, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((len(lengths), t_pad, 1, size, size), NAN)
    y = torch.full((len(lengths), t_pad), NAN)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randn(n, 1, size, size, generator=g)
        y[i, :n] = torch.from_numpy(label_curve(n, i, n // 2))
    return x, y


@pytest.mark.parametrize("kind,bidir", [("tempreg", False), ("tempreg", True), ("cnnreg", False)])
def test_padding_changes_neither_outputs_nor_loss_nor_grads(kind, bidir):
    torch.manual_seed(0)
    net = tempreg_net(kind, widths=(4, 8), blocks=(1, 1), hidden=8, bidirectional=bidir).train()
    loss = TempRegLoss(beta=1.0)
    x, y = _batch([5, 8], 8)
    xp, yp = _batch([5, 8], 13)  # same sequences, 5 more padded frames
    out, outp = net(x), net(xp)  # train mode: BatchNorm statistics must not see padded frames
    torch.testing.assert_close(out, outp[:, :8])
    assert (outp[:, 8:] == 0).all() and (out[0, 5:] == 0).all()
    l1, l2 = loss(out, y), loss(outp, yp)
    torch.testing.assert_close(l1, l2)
    g1 = torch.autograd.grad(l1, list(net.parameters()), allow_unused=True)
    g2 = torch.autograd.grad(l2, list(net.parameters()), allow_unused=True)
    for a, b in zip(g1, g2):
        if a is not None:
            torch.testing.assert_close(a, b)


def test_eval_output_of_a_sequence_does_not_depend_on_its_batch():
    torch.manual_seed(0)
    net = tempreg_net("tempreg", widths=(4, 8), blocks=(1, 1), hidden=8, bidirectional=True).eval()
    x, _ = _batch([5, 8], 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[0, :5], net(x[:1, :5])[0])


# ---- frames and DataLoaders ------------------------------------------------------------------------------------------
def test_seq_frames_picks_mid_ventricular_slice_and_resizes():
    c = toy_cine(n=12, ed=3, es=8, size=20, stack=5)
    labels = np.zeros(c.pixels.shape, np.uint8)
    labels[:, 1:4] = (c.pixels[:, 1:4] > 0) * 1  # LV only in slices 1..3 -> mid slice 2
    c = Cine("toy", "SAX", c.pixels, c.spacing, c.frame_times, labels=labels, ed=3, es=8)
    assert mid_slice(c) == 2
    f = seq_frames(c, 32)
    assert f.shape == (12, 32, 32) and f.dtype == np.float32
    assert mid_slice(toy_cine(stack=7)) == 3


def test_dls_pad_batches_and_learner_trains_one_step(tmp_path):
    items = [SeqItem(seq_frames(toy_cine(n, ed, es), 16), ed, es, f"c{i}", "4CH", split)
             for i, (n, ed, es, split) in enumerate([(20, 0, 7, "train"), (23, 5, 15, "train"), (21, 18, 4, "train"),
                                                     (25, 2, 10, "valid"), (22, 20, 6, "valid")])]
    dls = dataloaders(items, bs=2, seed=0)
    xb, yb = dls.one_batch()
    assert xb.shape[0] == 2 and xb.shape[2:] == (16, 16) and yb.shape == xb.shape[:2]
    xv, yv = dls.valid.one_batch()
    assert yv.shape == (2, 25) and not yv[0].isnan().any() and yv[1].isnan().sum() == 3  # 22 frames + 3 padded
    assert xv[1, 22:].isnan().all() and not xv[1, :22].isnan().any()
    learn = learner(dls, "TempReg-Net", beta=1.0, path=tmp_path, widths=(4, 8), blocks=(1, 1), hidden=8)
    learn.fit(1, 1e-3)
    vals = learn.recorder.values[-1]
    assert np.isfinite(vals).all() and len(vals) == 4  # train loss, valid loss, aFD ED, aFD ES


def test_roll_cycle_moves_frames_and_curve_together_on_train_only():
    from fastai.torch_core import TensorImage

    from cmrlib.methods.edes.data import RollCycle
    x = TensorImage(torch.arange(10.0).view(10, 1, 1).expand(10, 2, 2).clone())
    y = torch.from_numpy(label_curve(10, 0, 4))
    for _ in range(5):
        a, b = RollCycle()((x, y), split_idx=0)
        assert b.argmax().item() == a[:, 0, 0].argmin().item()  # ED label stays on frame 0's pixels
    a, b = RollCycle()((x, y), split_idx=1)
    assert torch.equal(a, x) and torch.equal(b, y)


def test_cyclic_lstm_gives_every_frame_context_so_rolling_the_cine_rolls_the_output():
    torch.manual_seed(0)
    x, _ = _batch([20], 20)
    for bidir in (False, True):
        net = tempreg_net("tempreg", widths=(4, 8), blocks=(1, 1), hidden=8, bidirectional=bidir).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(x.roll(7, 1)), net(x).roll(7, 1), atol=1e-3, rtol=0)
    flat = tempreg_net("tempreg", widths=(4, 8), blocks=(1, 1), hidden=8, cyclic=False).eval()
    with torch.no_grad():  # a plain LSTM starts cold at frame 0, so the start phase matters
        assert (flat(x.roll(7, 1)) - flat(x).roll(7, 1)).abs().max() > 1e-2


def test_motion_channel_cancels_what_does_not_move():
    from cmrlib.models.tempreg import motion_channel, valid_frames
    still = torch.randn(1, 1, 1, 8, 8).expand(1, 6, 1, 8, 8).clone()
    assert motion_channel(still, valid_frames(still)).abs().max() < 1e-4  # float rounding, not amplified
    x, _ = _batch([5, 8], 8)
    m = motion_channel(torch.nan_to_num(x), valid_frames(x))
    assert (m[0, 5:] == 0).all() and torch.allclose(m[1].std(), torch.tensor(1.0), atol=0.05)


def test_plateau_counts_frames_that_share_the_extremum():
    from cmrlib.methods.edes.evaluate import plateau
    v = np.array([100.0, 120.0, 150.0, 150.2, 150.0, 130.0, 80.0, 60.0, 60.1, 90.0])
    assert plateau(v, 3) == 3  # 150, 150.2, 150 lie within 0.5 % of 150.2
    assert plateau(v, 7) == 2 and plateau(v, 7, tol=0.0) == 1


class _BrightIsLV(torch.nn.Module):
    """A stand-in segmenter: bright pixels are LV (so the toy disc's area is the LV curve)."""

    def __init__(self):
        from cmrlib.data import FrameGeometry
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.geometry = FrameGeometry(size=32, spacing=None)

    def forward(self, x):
        from cmrlib.labels import LV
        s = torch.zeros(x.shape[0], 6, *x.shape[2:])
        s[:, LV] = 10 * x[:, 0] * self.w
        return s


@pytest.mark.parametrize("stack", [0, 3])
def test_segmentation_baseline_picks_max_and_min_of_the_lv_curve(stack):
    from cmrlib.methods import segmentation
    from cmrlib.methods.edes.predict import seg_detect
    seg = segmentation.Predictor({"SAX": _BrightIsLV(), "LAX": _BrightIsLV()})
    r = seg_detect(seg, toy_cine(n=20, ed=15, es=4, size=24, stack=stack, power=1.0))  # linear: no pixel ties
    assert (r["ed"], r["es"]) == (15, 4) and r["curve"].shape == (20,)


@pytest.mark.parametrize("decoder", ["argmax", "hybrid"])
def test_the_volume_curve_predictor_saves_and_reads_its_frames_through_the_run_segmenter(tmp_path, decoder):
    """The shipped ED/ES Predictor may be the run segmenter's LV volume curve: no network of its own, the segmenter
    found beside it, the smoothing and the decoder kept; saved and loaded it names the same frames as
    `seg_detect`."""
    from cmrlib import predictor
    from cmrlib.data import FrameGeometry
    from cmrlib.methods import edes, segmentation
    from cmrlib.methods.edes.predict import seg_detect
    from cmrlib.models import unet11
    torch.manual_seed(0)
    net = unet11(n_classes=6, width=0.125).eval()  # untrained: its labels are arbitrary but the same both ways
    net.geometry = FrameGeometry(size=32, spacing=None)
    segmentation.Predictor({"SAX": net}).save(tmp_path / predictor.file_name("segmentation"))
    seg = predictor.load(tmp_path / predictor.file_name("segmentation"))
    edes.Predictor.from_volume_curve(smooth=3, decoder=decoder).save(tmp_path / predictor.file_name("edes"))
    back = predictor.load(tmp_path / predictor.file_name("edes"))
    cine = toy_cine(n=20, ed=15, es=4, size=24, stack=3, power=1.0)
    got = back.predict(cine).table().set_index("measure")["value"]
    want = seg_detect(seg, cine, smooth=3, decoder=decoder)
    assert back.detector == "volume curve" and not back.nets and back.decoder == decoder
    assert (got["ED (SAX)"], got["ES (SAX)"]) == (want["ed"], want["es"])


def test_combine_averages_two_detectors_on_the_cycle():
    """Frames 19 and 1 of 20 average to 0, not 10: the mean is taken on the cycle."""
    from cmrlib.methods.edes.predict import combine
    r = combine(dict(curve=None, ed=19, es=6), dict(ed=1, es=8), 20)
    assert (r["ed"], r["es"]) == (0, 7)


def test_the_seam_control_finds_where_a_rolled_recording_jumps():
    """A cine whose last frames are missing and which is then rolled jumps at its true ED: the seam control finds
    that frame and nothing else about the heart."""
    cine = toy_cine(n=24, ed=0, es=8, size=24, power=1.0)
    cut = Cine("toy", "4CH", cine.pixels[:20], cine.spacing, cine.frame_times[:20], ed=0, es=8).rolled(7)
    from cmrlib.methods.edes.predict import seam_detect
    assert seam_detect(cut)["ed"] == cut.ed


def test_choose_ranks_by_es_then_ed_and_the_paired_table_is_against_the_choice():
    from cmrlib.methods.edes.evaluate import choose, paired_table
    import pandas as pd
    rows = [dict(method=m, cine_id=f"c{i}", fd_ed=ed, fd_es=es) for m, ed, es in
            (("a", 0, 2), ("b", 3, 1), ("c", 1, 1)) for i in range(4)]
    res = pd.DataFrame(rows)
    best, table = choose(res, ["a", "b", "c"])
    assert best == "c" and list(table.method) == ["a", "b", "c"]
    assert list(table.within_1se) == [False, False, True]  # b ties on ES but is worse on ED on every cine
    pair = paired_table(res, best).set_index("method")
    assert pair.loc["b", "diff_ED"] == 2 and pair.loc["a", "diff_ES"] == 1 and pair.loc["a", "n"] == 4


def test_choose_keeps_the_simplest_candidate_a_noisy_margin_cannot_beat():
    """One standard error: a simpler detector listed first stays chosen when the best beats it by less than the
    paired difference's SE, and loses when the best beats it on every cine."""
    from cmrlib.methods.edes.evaluate import choose
    import pandas as pd
    simple_es = [0, 2, 0, 1, 0, 2, 1, 0]  # mean 0.75
    best_es = [1, 0, 0, 0, 1, 1, 0, 2]  # mean 0.625: better by 0.125, SE of the difference about 0.4
    rows = [dict(method=m, cine_id=f"c{i}", fd_ed=1, fd_es=e) for m, es in (("curve", simple_es), ("net", best_es))
            for i, e in enumerate(es)]
    chosen, table = choose(pd.DataFrame(rows), ["curve", "net"])
    t = table.set_index("method")
    assert chosen == "curve" and t.loc["curve", "ES_margin"] == 0.125 and t.loc["curve", "ES_se"] > 0.125
    clear = [dict(method=m, cine_id=f"c{i}", fd_ed=1, fd_es=e + (m == "curve")) for m in ("curve", "net")
             for i, e in enumerate(best_es)]
    assert choose(pd.DataFrame(clear), ["curve", "net"])[0] == "net"


def test_choose_does_not_count_one_frame_on_one_cine_as_noise():
    """Integer errors: one frame worse on a single one of n cines is a margin of exactly one SE (1/n); that is not
    within one SE, while a tie is."""
    from cmrlib.methods.edes.evaluate import choose
    import pandas as pd
    n = 9
    rows = [dict(method=m, cine_id=f"c{i}", fd_ed=0, fd_es=int(m == "curve" and i == 0)) for m in ("curve", "net")
            for i in range(n)]
    chosen, table = choose(pd.DataFrame(rows), ["curve", "net"])
    t = table.set_index("method")
    assert t.loc["curve", "ES_margin"] == pytest.approx(1 / n) and t.loc["curve", "ES_se"] == pytest.approx(1 / n)
    assert chosen == "net" and not t.loc["curve", "within_1se"]
    tie = pd.DataFrame(rows).assign(fd_es=0)
    assert choose(tie, ["curve", "net"])[0] == "curve"


def test_choose_measures_against_the_best_at_both_phases_not_at_es_alone():
    """A detector with the smallest ES error but the largest ED error is not the yardstick: measured against it,
    every candidate better at ED would pass the ED test and only ES would count. The best is the smallest ED + ES."""
    from cmrlib.methods.edes.evaluate import choose
    import pandas as pd
    curve = dict(fd_es=[1, 1, 2, 1, 1, 1, 2, 1], fd_ed=[1] * 8)  # 1.25 / 1.0
    sharp_es = dict(fd_es=[1, 0, 1, 1, 0, 1, 1, 0], fd_ed=[3, 2] * 4)  # 0.625 / 2.5
    rows = [dict(method=m, cine_id=f"c{i}", fd_es=e, fd_ed=d) for m, fd in (("curve", curve), ("net", sharp_es))
            for i, (e, d) in enumerate(zip(fd["fd_es"], fd["fd_ed"]))]
    chosen, table = choose(pd.DataFrame(rows), ["curve", "net"])
    t = table.set_index("method")
    assert chosen == "curve" and not t.loc["net", "within_1se"] and t.loc["net", "ED_margin"] == 1.5


def _disc_cine(subject: str, view: str, radii, label: int = 1) -> Cine:
    """A toy long-axis cine whose only label is a disc of the given radius per frame."""
    yy, xx = np.mgrid[:32, :32]
    labels = np.stack([((yy - 16) ** 2 + (xx - 16) ** 2 <= r * r) * label for r in radii]).astype(np.uint8)
    return Cine(subject=subject, view=view, pixels=labels.astype(np.float32), spacing=(1.5, 1.5),
                frame_times=np.arange(len(radii)) * 30.0, labels=labels)


def test_pseudo_reference_takes_every_view_s_ed_es_from_its_subject_s_4ch_lv_area():
    from cmrlib.labels import LA, LV
    from cmrlib.methods.edes.evaluate import pseudo_reference

    radii = np.array([9, 10, 11, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 4, 5, 6, 7, 8, 8.5, 8.7])  # ED 3, ES 12
    four = _disc_cine("s1", "4CH", radii, LV)
    two = _disc_cine("s1", "2CH", radii[::-1], LA)  # no LV: takes the 4CH frames
    other = _disc_cine("s2", "2CH", radii, LA)  # no labelled 4CH: left out
    short = _disc_cine("s1", "3CH", radii[:10], LV)  # another number of frames: left out
    out = pseudo_reference([four, two, other, short])
    assert [(c.subject, c.view, c.ed, c.es) for c in out] == [("s1", "4CH", 3, 12), ("s1", "2CH", 3, 12)]
    assert all(c.meta["ed_es_from"] == "4CH pseudo-label LV area" for c in out) and four.ed is None


def test_the_ukbb_demo_reads_with_its_pseudo_labels_under_pseudonyms(data_dir):
    from cmrlib.io.ukbb_cardiac import read_demo

    demo = data_dir / "ukbb-demo"
    if not demo.is_dir():
        pytest.skip(f"no UK Biobank demo under {data_dir}")
    subjects = read_demo(demo)
    assert list(subjects) == ["ukbb-demo-1", "ukbb-demo-2"]
    for name, cines in subjects.items():
        by_view = {c.view: c for c in cines}
        assert sorted(by_view) == ["2CH", "3CH", "4CH"] and all(c.n_frames == 50 for c in cines)
        assert set(np.unique(by_view["4CH"].labels)) == {0, 1, 2, 3, 4, 5}
        assert set(np.unique(by_view["2CH"].labels)) == {0, 4} and by_view["3CH"].labels is None
        assert by_view["4CH"].meta["labels_are"] == "pseudo" and all(c.subject == name for c in cines)


def test_demo_cines_filters_views_and_labels_and_skips_with_a_line_naming_no_folder(data_dir, tmp_path, capsys):
    from cmrlib.io.ukbb_cardiac import demo_cines

    private = tmp_path / "DOE^JANE"
    private.mkdir()
    assert demo_cines(private) == []
    said = capsys.readouterr().out
    assert "no ukbb-demo/" in said and "DOE" not in said
    if not (data_dir / "ukbb-demo").is_dir():
        pytest.skip(f"no UK Biobank demo under {data_dir}")
    cines = demo_cines(data_dir, ("3CH", "4CH"), labelled=True)
    assert [(c.subject, c.view) for c in cines] == [("ukbb-demo-1", "4CH"), ("ukbb-demo-2", "4CH")]


def test_the_ukbb_demo_sax_pseudo_label_measures_are_those_of_a_healthy_heart(data_dir):
    from cmrlib.io.ukbb_cardiac import demo_folders, sax_measures

    demo = data_dir / "ukbb-demo"
    if not demo.is_dir():
        pytest.skip(f"no UK Biobank demo under {data_dir}")
    for folder in demo_folders(demo).values():
        m = sax_measures(folder)
        assert 55 <= m["LVEF"] <= 75 and 100 <= m["LVEDV"] <= 250 and 50 <= m["LVM"] <= 200
    assert sax_measures(data_dir) == {}  # no SAX segmentation there


def test_template_fit_reads_every_frame_where_an_argmax_reads_the_peak():
    from cmrlib.methods.edes.curves import fit_template, read_frames

    n, ed, es = 20, 7, 14
    truth = label_curve(n, ed, es)
    assert fit_template(truth) == (ed, es)
    assert fit_template(0.4 * truth + 0.3) == (ed, es)  # any positive scale and offset
    noisy = truth.copy()
    noisy[(ed - 2) % n] += 0.08  # a flat diastolic top (0.95 two frames early): a little noise wins the argmax
    assert decode(noisy)[0] == (ed - 2) % n and fit_template(noisy) == (ed, es)
    noise = np.random.default_rng(0).normal(0, 0.1, (50, n))
    hits = [fit_template(truth + e) for e in noise]  # every frame votes: right in most noisy curves
    assert np.mean([frame_diff(h[0], ed, n) <= 1 and frame_diff(h[1], es, n) <= 1 for h in hits]) >= 0.9
    with pytest.raises(ValueError, match="unknown decoder"):
        read_frames(truth, decoder="peak")
    dip = noisy.copy()
    dip[(es + 1) % n] = -0.2  # a sharp trough one frame after the template's ES
    assert read_frames(dip, decoder="hybrid") == (fit_template(dip)[0], (es + 1) % n)
    assert read_frames(dip, decoder="hybrid")[0] == read_frames(dip, decoder="template")[0]


def test_the_predictor_keeps_its_decoder_and_refuses_an_unknown_one():
    from cmrlib.methods.edes import Predictor
    from cmrlib.predictor import PredictorError

    net = tempreg_net()
    assert "decoder" not in Predictor.from_model(net, "n", 64, 1.0).prep  # extremes: the files made before
    p = Predictor.from_model(net, "n", 64, 1.0, decoder="template")
    assert p.decoder == "template"
    p.prep["decoder"] = "peak"
    with pytest.raises(PredictorError, match="unknown decoder"):
        p.decoder


def test_averaging_mid_slices_reads_the_mean_of_their_curves():
    """`slices` averages the network's curves of that many slices about the mid one (inside the stack); a given `z`
    or a single-slice cine reads one curve as before."""
    from cmrlib.methods.edes.data import seq_frames
    from cmrlib.methods.edes.predict import around_mid, predict, predict_curve

    cine = toy_cine(stack=5)
    assert around_mid(cine, 3) == [1, 2, 3] and around_mid(cine, 9) == [0, 1, 2, 3, 4]
    torch.manual_seed(0)
    net = tempreg_net(widths=(4, 8, 16), blocks=(1, 1, 1), hidden=8)
    cine.pixels[:, 1] += np.random.default_rng(0).normal(0, 0.5, cine.pixels[:, 1].shape)  # a noisy slice
    mean = np.mean([predict_curve(net, seq_frames(cine, 32, z)) for z in (1, 2, 3)], 0)
    assert np.allclose(predict(net, cine, 32, slices=3)["curve"], mean, atol=1e-6)
    assert not np.allclose(mean, predict_curve(net, seq_frames(cine, 32, 2)), atol=1e-4)
    assert np.allclose(predict(net, cine, 32, z=2, slices=3)["curve"], predict_curve(net, seq_frames(cine, 32, 2)))


def test_resampling_a_cycle_keeps_its_shape_and_maps_frames_back():
    """A cine resampled to a fixed length is the same cycle: resampled and back, a smooth curve is unchanged within
    interpolation error; the same length is the identity; ED and ES land on the nearest resampled frame."""
    from cmrlib.measure import resample_cycle
    from cmrlib.methods.edes.data import resampled_index

    t = np.arange(23)
    curve = np.cos(2 * np.pi * t / 23).astype(np.float32)
    np.testing.assert_allclose(resample_cycle(curve, 23), curve, atol=1e-6)
    back = resample_cycle(resample_cycle(curve, 30), 23)
    assert np.abs(back - curve).max() < 0.02
    frames = np.random.default_rng(0).random((12, 4, 4)).astype(np.float32)
    up = resample_cycle(frames, 24)
    assert up.shape == (24, 4, 4) and np.allclose(up[::2], frames)  # every second frame is an acquired one
    np.testing.assert_allclose(up[1], (frames[0] + frames[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(up[-1], (frames[-1] + frames[0]) / 2, rtol=1e-6)  # the cycle wraps
    assert resampled_index(6, 12, 24) == 12 and resampled_index(11, 12, 30) == 28 and resampled_index(0, 17, 30) == 0


def test_a_real_item_trains_on_every_lv_slice_and_validates_on_the_mid_one():
    """Every-slice training: a training sequence draws one of the LV slices each time it is read, a validation
    sequence reads the mid slice; resampled items carry their ED and ES on the new frames."""
    import random

    from cmrlib.labels import LV
    from cmrlib.methods.edes.data import _get_x, lv_slices, real_item, resampled

    cine = toy_cine(n=12, ed=1, es=5, stack=6)
    cine.pixels += np.arange(6, dtype=np.float32)[None, :, None, None] * 0.1 * np.linspace(0, 1, 24)  # each slice
    # its own gradient, so that the slices stay apart after normalising
    labels = np.zeros(cine.pixels.shape, np.uint8)
    labels[[1, 5], 1:5, 10:14, 10:14] = LV  # LV labelled on slices 1-4 at ED and ES
    cine.labels, cine.labelled = labels, np.isin(np.arange(12), [1, 5])
    assert lv_slices(cine) == [1, 2, 3, 4] and mid_slice(cine) == 3 and mid_slice(cine, masks=False) == 3
    plain = real_item(cine, 16, 1.0)
    assert plain.stack is None and plain.n_frames == 12
    every = real_item(cine, 16, 1.0, every_slice=True)
    assert every.stack.shape == (12, 4, 16, 16)
    np.testing.assert_allclose(every.stack[:, 2], every.frames)  # slice 3 is the mid one
    random.seed(0)
    drawn = {int(np.argmin([np.abs(_get_x(every).numpy() - every.stack[:, k]).max() for k in range(4)]))
             for _ in range(40)}
    assert drawn == {0, 1, 2, 3}  # every LV slice is drawn
    valid = SeqItem(every.frames, every.ed, every.es, "toy", "SAX", "valid", every.stack)
    assert all(np.allclose(_get_x(valid).numpy(), every.frames) for _ in range(5))
    fixed = resampled(real_item(cine, 16, 1.0), 30)
    assert fixed.n_frames == 30 and (fixed.ed, fixed.es) == (round(30 / 12), round(5 * 30 / 12))


def test_a_network_reads_the_stack_middle_without_masks_and_at_a_fixed_length():
    """At test the slice comes from the stack, never from masks; a fixed-length reading returns a curve on the
    cine's own frames, the plain curve when the length is the cine's."""
    from cmrlib.labels import LV
    from cmrlib.methods.edes.predict import around_mid, predict, predict_curve

    cine = toy_cine(n=16, ed=2, es=8, stack=7)
    labels = np.zeros(cine.pixels.shape, np.uint8)
    labels[2, :2, 10:14, 10:14] = LV  # masks on the first two slices only
    cine.labels, cine.labelled = labels, np.arange(16) == 2
    assert mid_slice(cine) == 1 and around_mid(cine, 1) == [3]  # a training cine's masks never pick the test slice
    torch.manual_seed(0)
    net = tempreg_net(widths=(4, 8, 16), blocks=(1, 1, 1), hidden=8)
    plain = predict(net, cine, 32)["curve"]
    np.testing.assert_allclose(plain, predict_curve(net, seq_frames(cine, 32, 3)), atol=1e-6)
    np.testing.assert_allclose(predict(net, cine, 32, frames=16)["curve"], plain, atol=1e-6)
    out = predict(net, cine, 32, frames=30)
    assert out["curve"].shape == (16,) and 0 <= out["ed"] < 16 and 0 <= out["es"] < 16


def test_the_predictor_keeps_its_reading_and_refuses_one_out_of_bounds():
    """slices and frames travel in the model file; a file without them reads one slice at the cine's frames; a
    file's reading out of bounds is refused with the key named."""
    from cmrlib.methods.edes import Predictor
    from cmrlib.methods.edes.data import Reading
    from cmrlib.predictor import PredictorError

    net = tempreg_net()
    plain = Predictor.from_model(net, "n", 64, 1.0)
    assert not {"slices", "frames"} & set(plain.prep) and plain.reading == dict(slices=1, frames=None)
    p = Predictor.from_model(net, "n", 64, 1.0, reading=Reading(slices=3, every_slice=True, frames=30))
    assert p.reading == dict(slices=3, frames=30)
    for key, bad in (("slices", 0), ("slices", 50), ("slices", "3"), ("frames", 2), ("frames", 10 ** 6),
                     ("frames", 30.5), ("slices", True)):
        q = Predictor.from_model(net, "n", 64, 1.0)
        q.prep[key] = bad
        with pytest.raises(PredictorError, match=key):
            q.reading
