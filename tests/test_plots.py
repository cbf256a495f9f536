"""cmrlib.plots: figures build on small inputs, colours and lines land where they should, PNGs are written safely."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from cmrlib import plots as P
from cmrlib import stats as S
from cmrlib.labels import LA, LV, MYO, RA, RV

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rendered(fig) -> np.ndarray:
    """The figure as an (H,W,3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


@pytest.mark.parametrize("label", [LV, MYO, RV, LA, RA])
def test_overlay_fill_colour_matches_label(label):
    img = np.zeros((20, 20))
    mask = np.zeros((20, 20), np.uint8)
    mask[:, :10] = label  # left half labelled, right half background
    fig = plt.figure(figsize=(2, 2), dpi=50)
    ax = fig.add_axes((0, 0, 1, 1))
    P.overlay(ax, img, mask, alpha=1.0)
    px = rendered(fig)
    h, w = px.shape[:2]
    expected = np.round(np.array(P.LABEL_COLORS[label]) * 255)
    np.testing.assert_allclose(px[h // 2, w // 4], expected, atol=2)
    np.testing.assert_allclose(px[h // 2, 3 * w // 4], [0, 0, 0], atol=2)  # black image, no label
    plt.close(fig)


def test_overlay_contour_points_and_errors():
    img = np.random.default_rng(0).random((32, 32))
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = LV
    mask[12:20, 12:20] = MYO
    fig, ax = plt.subplots()
    P.overlay(ax, img, mask, points={"truth": [[5, 5], [20, 6]], "pred": [[6, 5], [21, 7]]}, mode="contour", title="x")
    assert len(ax.collections) >= 4 and ax.get_legend() is not None  # 2 contour sets + 2 point sets
    with pytest.raises(ValueError, match="mode"):
        P.overlay(ax, img, mask, mode="outline")
    with pytest.raises(ValueError, match="shape"):
        P.overlay(ax, img, mask[:10])
    plt.close(fig)


def agreement_data(n=30, seed=0):
    g = np.random.default_rng(seed)
    ref = g.normal(120, 25, n)
    return ref + g.normal(4, 6, n), ref


def test_bland_altman_lines_at_bias_and_loa():
    auto, ref = agreement_data()
    ax = P.bland_altman_plot(auto, ref, units="mL", title="LVEDV")
    ba = S.bland_altman(auto, ref)
    ys = {ln.get_gid(): ln.get_ydata()[0] for ln in ax.lines}
    assert ys["bias"] == pytest.approx(ba["bias"])
    assert ys["+1.96 SD"] == pytest.approx(ba["loa_high"]) and ys["-1.96 SD"] == pytest.approx(ba["loa_low"])
    texts = [t.get_text() for t in ax.texts]
    assert f"bias {ba['bias']:.2f}" in texts
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 1], auto - ref)  # y = auto - ref
    plt.close(ax.figure)


def test_regression_plot_identity_and_annotation():
    auto, ref = agreement_data()
    ax = P.regression_plot(auto, ref, units="mL")
    ident = [ln for ln in ax.lines if ln.get_gid() == "identity"][0]
    np.testing.assert_allclose(ident.get_xdata(), ident.get_ydata())
    r = S.regression(auto, ref)["r"]
    assert any(f"r = {r:.3f}" in t.get_text() for t in ax.texts)
    plt.close(ax.figure)


def test_agreement_figure_and_save(tmp_path):
    auto, ref = agreement_data()
    df = pd.DataFrame({"a": auto, "r": ref, "ea": auto / 3, "er": ref / 3})
    fig = P.agreement_figure(df, {"LVEDV": ("a", "r"), "LVEF": ("ea", "er")}, {"LVEDV": "mL", "LVEF": "%"})
    assert len(fig.axes) == 4
    out = P.save_figure(fig, tmp_path / "figs", "01_agreement")
    assert out == tmp_path / "figs" / "01_agreement.png" and out.read_bytes()[:8] == PNG_MAGIC
    assert not plt.fignum_exists(fig.number)  # closed after saving
    assert [p.name for p in out.parent.iterdir()] == ["01_agreement.png"]  # no temp file left behind
    with pytest.raises(ValueError, match="plain file stem"):
        P.save_figure(plt.figure(), tmp_path, "../escape")


def test_cases_figure_and_pick_cases(tmp_path):
    g = np.random.default_rng(1)
    imgs = [g.random((24, 24)) for _ in range(3)]
    truths = [np.pad(np.full((8, 8), LV, np.uint8), 8) for _ in range(3)]
    preds = [np.roll(t, k, axis=1) for k, t in enumerate(truths)]
    scores = [0.95, 0.8, 0.6]
    assert P.pick_cases([0.7, np.nan, 0.95, 0.6, 0.8]) == [2, 0, 3]
    fig = P.cases_figure(imgs, truths, preds, scores, titles=["best", "median", "worst"])
    assert len(fig.axes) == 6 and "Dice 0.950" in fig.axes[0].get_title()
    assert P.save_figure(fig, tmp_path, "01_cases.png").read_bytes()[:8] == PNG_MAGIC


def test_curve_plot_marks():
    t = np.arange(20) * 40.0
    curves = {"true": 100 + 40 * np.cos(2 * np.pi * np.arange(20) / 20), "pred": 98 + 41 * np.cos(2 * np.pi * np.arange(20) / 20)}
    ax = P.curve_plot(None, curves, frame_times=t, marks={"ED true": 0, "ES true": 10, "ES pred": [9]})
    vlines = [ln for ln in ax.lines if ln.get_label() in ("ED true", "ES true", "ES pred")]
    assert sorted(ln.get_xdata()[0] for ln in vlines) == [0.0, 360.0, 400.0]
    assert ax.get_xlabel() == "time (ms)"
    plt.close(ax.figure)


def test_save_refuses_identifiers(tmp_path):
    fig, ax = plt.subplots()
    ax.set_title("subject 1234567")  # EID-shaped
    with pytest.raises(P.PrivacyError):
        P.save_figure(fig, tmp_path, "x")
    ax.set_title("patient DOE^JOHN")
    with pytest.raises(P.PrivacyError):
        P.save_figure(fig, tmp_path, "x", forbidden=["DOE^JOHN"])
    ax.set_title("S012 · p = 0.0000001")
    assert P.save_figure(fig, tmp_path, "x").exists()
