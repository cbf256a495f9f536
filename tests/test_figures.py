"""The methods' figure functions on small hand-made tables: each draws what its table says (bars, points, lines,
legends), and nothing it does not."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cmrlib.methods import cussp, edes, mvnet, sslhf  # noqa: E402
from cmrlib.methods import heartmae as hm  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def bar_heights(ax) -> list[float]:
    return [round(p.get_height(), 6) for p in ax.patches]


def test_afd_figure_draws_one_bar_per_method_and_view_with_the_table_heights():
    table = pd.DataFrame(dict(method=["A", "A", "B", "B"], view=["SAX", "4CH"] * 2, aFD_ED=[1.0, 2.0, 3.0, 4.0],
                              SD_ED=[0.5, np.nan, 1.0, 1.0], aFD_ES=[0.1, 0.2, 0.3, 0.4], SD_ES=[0.0] * 4))
    fig = edes.figures.afd_figure(table)
    ed, es = fig.axes[:2]
    assert bar_heights(ed) == [1.0, 2.0, 3.0, 4.0] and bar_heights(es) == [0.1, 0.2, 0.3, 0.4]
    assert [t.get_text() for t in ed.get_xticklabels()] == ["SAX", "4CH"]
    assert [t.get_text() for t in es.get_legend().get_texts()] == ["A", "B"]


def test_grade_figure_gives_each_row_its_recall_per_grade_and_counts_each_grade():
    by_grade = pd.DataFrame(dict(row=["RF", "RF", "SIAM", "SIAM"], grade=[1, 3] * 2, n=[4, 2, 4, 2],
                                 found=[1, 2, 3, 2], recall=[0.25, 1.0, 0.75, 1.0]))
    ax = cussp.figures.grade_figure(by_grade).axes[0]
    assert bar_heights(ax) == [0.25, 0.75, 1.0, 1.0]  # pandas draws grade by grade
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["grade 1 (n=4)", "grade 3 (n=2)"]


def test_pool_figure_plots_each_metric_against_the_pool_size_in_order():
    points = ((600, 0.7, 0.9), (0, 0.5, 0.6), (150, 0.6, 0.8))
    rows = [dict(row="CUSSP-SIAM-25", metric=m, value=v, ci_low=v - 0.1, ci_high=v + 0.05, pool_cines=n)
            for n, f1, auc in points for m, v in (("f1", f1), ("roc_auc", auc))]
    fig = cussp.figures.pool_figure(pd.DataFrame(rows))
    for ax, want in zip(fig.axes, ([0.5, 0.6, 0.7], [0.6, 0.8, 0.9])):
        x, y = ax.lines[0].get_data()
        assert list(x) == [0, 150, 600] and np.allclose(y, want)
    assert "CUSSP-SIAM-25" in fig._suptitle.get_text()


def test_budget_figure_draws_each_row_as_its_draws_mean_by_budget_dashed_for_random_encoders():
    rows = [dict(budget=b, draw=d, row=r, roc_auc=base + 0.01 * b + 0.02 * d, f1=0.5)
            for b in (32, 8) for d in (0, 1) for r, base in (("CUSSP-SIAM-25", 0.5), ("CUSSP-SIAM-25 (random encoder)", 0.4))]
    fig = cussp.figures.budget_figure(pd.DataFrame(rows))
    lines = {ln.get_label(): ln for ln in fig.axes[0].lines if not ln.get_label().startswith("_")}
    x, y = lines["CUSSP-SIAM-25"].get_data()
    assert list(x) == [8, 32] and np.allclose(y, [0.59, 0.83])  # the mean of the two draws, budgets in order
    assert lines["CUSSP-SIAM-25 (random encoder)"].get_linestyle() == "--" and lines["CUSSP-SIAM-25"].get_linestyle() == "-"
    assert len(fig.axes[0].collections) == 2  # each row's range over draws


def test_ef_figure_marks_the_labels_on_the_other_side_of_the_truth():
    labels = pd.DataFrame(dict(subject=["a", "b", "c"], lvef=[40.0, 55.0, 49.0], lvef_true=[45.0, 48.0, 52.0]))
    fig = sslhf.figures.ef_figure(labels)
    assert len(fig.axes) == 2 and fig.axes[1].get_title().startswith("2 labels on the other side")
    assert len(sslhf.figures.ef_figure(labels.assign(lvef_true=np.nan)).axes) == 1


def test_roc_figure_draws_every_row_at_both_levels_with_its_auc_in_the_legend():
    fpr = np.linspace(0, 1, 5)
    roc = pd.concat([pd.DataFrame(dict(row=r, level=lv, fpr=fpr, tpr=fpr ** k, low=fpr ** k - 0.1, high=fpr ** k))
                     for r, k in (("SSLHF", 0.5), ("A: no proxy", 1.0)) for lv in ("patch", "patient")])
    aucs = pd.DataFrame(dict(row=["SSLHF", "A: no proxy"] * 2, level=["patch"] * 2 + ["patient"] * 2, metric="auc",
                             mean=[0.7, 0.5, 0.8, 0.55]))
    fig = sslhf.figures.roc_figure(roc, aucs)
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["SSLHF (AUC 0.80)",
                                                                         "A: no proxy (AUC 0.55)"]
    assert len(fig.axes[0].collections) == 1  # the SSLHF band only


def test_learning_curve_puts_each_fraction_at_its_patient_count():
    summ = pd.DataFrame(dict(row="SSLHF", level="patient", metric="auc", fraction=[1.0, 0.5],
                             mean=[0.8, 0.6], ci_low=[0.7, 0.5], ci_high=[0.9, 0.7]))
    ax = sslhf.figures.learning_curve_figure(summ, pd.Series({0.5: 20, 1.0: 40})).axes[0]
    x, y = ax.lines[0].get_data()
    assert list(x) == [20, 40] and list(y) == [0.6, 0.8]


def test_heatmap_figure_writes_each_convention_pair_where_it_belongs():
    mat = pd.DataFrame(dict(trained_on=["A", "A", "B", "B"], tested_on=["A", "B"] * 2, err_mm=[1.0, 2.5, 3.0, 1.5],
                            abs_disp_err_mm=[0.1, 0.2, 0.3, 0.4]))
    fig = mvnet.figures.heatmap_figure(mat)
    assert [t.get_text() for t in fig.axes[0].texts] == ["1.00", "2.50", "3.00", "1.50"]
    assert fig.axes[0].get_ylabel() == "trained_on" and fig.axes[0].get_xlabel() == "tested_on"


def test_displacement_figure_draws_each_stage_as_a_mean_over_phase_bins():
    frames = pd.DataFrame(dict(subject="s", view="4CH", stage=np.repeat(["1", "1+2+2"], 4), frame=np.tile(range(4), 2),
                               disp_err_mm=[1.0, 1.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0]))
    ax = mvnet.figures.displacement_figure(frames, stages=("1", "1+2+2"), n_bins=2).axes[0]
    (x1, y1), (x2, y2) = (line.get_data() for line in ax.lines[:2])
    assert list(x1) == [0.0, 0.5] and list(y1) == [1.0, 3.0] and list(y2) == [0.0, 0.0]


def test_attention_by_view_sums_each_subjects_slices_then_averages_subjects():
    names = [["s1_SAX:3#0", "s1_SAX:5#0", "s1_4CH#0"], ["s2_SAX:4#0", "s2_2CH#0"]]
    att = np.array([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0]])  # the second bag is padded
    assert [hm.figures.view_kind(n) for n in names[0]] == ["SAX", "SAX", "4CH"]
    by = hm.figures.attention_by_view(att, names).set_index("view")
    assert by.loc["SAX", "attention"] == pytest.approx(0.55) and by.loc["4CH", "attention"] == pytest.approx(0.5)


def test_view_gallery_shows_each_view_at_ed_and_es_with_its_subject_and_phase(tmp_path):
    from cmrlib.phantom import make_cohort
    from cmrlib.plots import view_gallery

    store = make_cohort(tmp_path / "c", n=2, seed=0, n_frames=8, matrix=48, pixel_mm=4.0, progress=False)
    man = store.manifest()
    fig = view_gallery(store, man)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    first = man.groupby("view")["cine_id"].first()
    assert len(titles) == 2 * len(first)
    for view, cid in first.items():
        subject = man.set_index("cine_id").at[cid, "subject"]
        assert {f"{subject} {view} ED", f"{subject} {view} ES"} <= set(titles)
