"""The real SAX cohort: ACDC's cropped cines ingested with their truths from the full labels (`reference.csv`, never
the crop's masks) and patient-grouped, diagnosis-stratified folds that keep one exam's two segmentations together."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from io_fixtures import nii

from cmrlib.io.acdc import REFERENCE_FROM
from cmrlib.store import grouped_folds
from cmrlib.study import StudySkipped, real_sax_cohort

GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")


def cine_folder(root: Path, n_per_group: int = 2, frames: int = 6) -> Path:
    """An `acdc-cine/` folder of tiny patients (a disc LV that shrinks to ES) with `reference.csv` truths that
    differ from what the crop's masks give."""
    folder = root / "acdc-cine"
    rows, pid = [], 0
    yy, xx = np.mgrid[:24, :24]
    for g in GROUPS:
        for _ in range(n_per_group):
            pid += 1
            name = f"patient{pid:03d}" if pid not in (3, 4) else ("patient074", "patient076")[pid - 3]
            d = folder / name
            d.mkdir(parents=True)
            radius = np.linspace(7, 4, frames // 2).tolist() + np.linspace(4, 7, frames - frames // 2).tolist()
            lv = np.stack([((yy - 12) ** 2 + (xx - 12) ** 2 < r * r) for r in radius])  # (T, H, W)
            cine = np.repeat((lv * 200 + 20).astype(np.uint8)[:, None], 3, 1)  # (T, Z, H, W)
            nii(np.transpose(cine, (3, 2, 1, 0)), d / f"{name}_4d.nii.gz", (1.5, 1.5, 10.0))
            es = frames // 2
            for t in (0, es - 1):
                nii(np.transpose(cine[t], (2, 1, 0)), d / f"{name}_frame{t + 1:02d}.nii.gz", (1.5, 1.5, 10.0))
                nii(np.transpose((lv[t] * 3).astype(np.uint8)[None].repeat(3, 0), (2, 1, 0)),
                    d / f"{name}_frame{t + 1:02d}_gt.nii.gz", (1.5, 1.5, 10.0))
            (d / "Info.cfg").write_text(f"ED: 1\nES: {es}\nGroup: {g}\nHeight: 170\nNbFrame: {frames}\nWeight: 70\n")
            rows.append(dict(patient=name, group=g, ed=1, es=es, n_frames=frames, transposed=0, lv_in_crop=0.8,
                             LVEDV=150.0 + pid, LVESV=60.0, LVEF=round(100 * (90 + pid) / (150 + pid), 1), RVEDV=140.0,
                             RVESV=60.0, RVEF=57.1, LVM=110.0, note="", included=1))
    pd.DataFrame(rows).to_csv(folder / "reference.csv", index=False)
    return folder


def test_folds_are_stratified_grouped_and_a_pure_function_of_the_seed():
    strata = {f"s{i:02d}": GROUPS[i % 5] for i in range(30)}
    folds = grouped_folds(strata, 5, seed=3, together=[("s07", "s12")])
    assert folds["s07"] == folds["s12"]
    counts = pd.crosstab(pd.Series(strata), pd.Series(folds))
    assert counts.shape == (5, 5) and (counts.max(axis=1) - counts.min(axis=1) <= 2).all()
    shuffled = dict(reversed(list(strata.items())))
    assert grouped_folds(shuffled, 5, seed=3, together=[("s12", "s07")]) == folds
    assert grouped_folds(strata, 5, seed=4, together=[("s07", "s12")]) != folds


def test_the_real_cohort_takes_its_truths_from_the_reference_and_counts_one_exam_once(tmp_path):
    """ACDC segmented one exam twice (074, 076): the cohort keeps it once, the other segmentation's truths beside
    it as a second observer's."""
    cine_folder(tmp_path, n_per_group=3)
    store, table = real_sax_cohort(tmp_path, tmp_path / "run" / "real_sax", seed=0, k=5)
    assert len(table) == 14 and set(table.group) == set(GROUPS) and table.fold.between(0, 4).all()
    assert "acdc076" not in set(table.subject)
    ref = pd.read_csv(tmp_path / "acdc-cine" / "reference.csv").set_index("patient")
    one = table.set_index("subject").loc["acdc074"]
    assert one.LVEDV_second == ref.loc["patient076", "LVEDV"] and table.LVEDV_second.notna().sum() == 1
    ref = ref.drop(index="patient076").reset_index()
    got = table.set_index("subject")["LVEDV"]
    want = pd.Series(ref.LVEDV.to_numpy(), index=["acdc" + p[-3:] for p in ref.patient])
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    c = store.read(table.cine_id.iloc[0])
    assert c.meta["truth_from"] == REFERENCE_FROM and c.n_frames == 6 and "LVSV" not in c.meta
    again, table2 = real_sax_cohort(tmp_path, tmp_path / "run" / "real_sax", seed=0, k=5)  # reused, the same
    pd.testing.assert_frame_equal(table, table2)


def test_a_quick_run_keeps_the_first_patients_of_each_diagnosis(tmp_path):
    cine_folder(tmp_path, n_per_group=3)
    _, every = real_sax_cohort(tmp_path, tmp_path / "real_sax", seed=0, k=5)
    _, few = real_sax_cohort(tmp_path, tmp_path / "real_sax", seed=0, k=5, per_group=2)
    assert len(every) == 14 and len(few) == 10 and (few.groupby("group").size() == 2).all()  # 076 is 074's exam
    assert set(few.subject) == set(every.sort_values("subject").groupby("group").head(2).subject)
    with pytest.raises(StudySkipped, match="5 real SAX patients with reference truths: fewer than two per fold of 5"):
        real_sax_cohort(tmp_path, tmp_path / "real_sax", seed=0, k=5, per_group=1)


def test_without_the_real_folder_the_step_is_skipped_with_its_reason(tmp_path):
    with pytest.raises(StudySkipped, match="no real SAX cines: acdc-cine/reference.csv is not under"):
        real_sax_cohort(tmp_path, tmp_path / "out")
    with pytest.raises(StudySkipped, match="the data root"):
        real_sax_cohort(None, tmp_path / "out")


def test_a_rolled_cine_keeps_frames_labels_and_ed_es_together():
    from cmrlib.record import Cine

    t = np.arange(6, dtype=np.float32)
    px = np.broadcast_to(t[:, None, None], (6, 4, 4)).copy()
    labels = (px > 2).astype(np.uint8)
    c = Cine("s1", "4CH", px, (1.0, 1.0), t * 40, labels=labels, ed=0, es=3,
             landmarks={"truth": np.repeat(t[:, None, None], 2, 1).repeat(2, 2)})
    r = c.rolled(4)
    assert (r.ed, r.es) == (4, 1) and r.meta["rolled_by"] == 4
    assert r.pixels[r.ed, 0, 0] == c.pixels[c.ed, 0, 0] and r.pixels[r.es, 0, 0] == c.pixels[c.es, 0, 0]
    assert np.array_equal(r.labels[r.es], c.labels[c.es]) and r.landmarks["truth"][r.es, 0, 0] == 3
    np.testing.assert_array_equal(r.frame_times, c.frame_times)  # the time grid is the acquisition's
    assert c.ed == 0 and c.pixels[0, 0, 0] == 0  # the original is untouched
    back = r.rolled(-4)
    assert np.array_equal(back.pixels, c.pixels) and (back.ed, back.es) == (c.ed, c.es)


class Perfect:
    """A segmenter that returns the manual ED mask at ED and the ES mask at every other frame."""

    nets = {"SAX": None}

    def labels(self, c):
        return np.stack([c.labels[c.ed] if t == c.ed else c.labels[c.es] for t in range(c.n_frames)])


def test_real_agreement_scores_each_segmenter_only_where_it_never_trained(tmp_path):
    from cmrlib.analysis import agreement as ag

    cine_folder(tmp_path, n_per_group=3)
    store, subjects = real_sax_cohort(tmp_path, tmp_path / "real_sax", seed=0, k=5)
    cines = {r.subject: store.read(r.cine_id) for r in subjects.itertuples()}
    full = {s: c for s, c in cines.items()}  # the synthetic crop is the whole field here
    held = set(subjects.subject[:4])
    long = ag.real_sax(subjects, full, cines, {"perfect": (Perfect(), held), "everyone": (Perfect(), None)},
                       progress=False)
    assert list(long.columns) == ag.LONG_COLUMNS and set(long.cohort) == {ag.REAL_COHORT}
    per = long.groupby("method").subject.nunique()
    assert per["perfect, crop"] == 4 and per["everyone, crop"] == 14 and per["second observer (074/076)"] == 1
    crop = long[long.method == "everyone, crop"]
    np.testing.assert_allclose(crop.value, crop.reference)  # the same masks: the same crop volumes
    ed = long[(long.method == "everyone, LV curve") & (long.measure == "ED frame")]
    assert (ed.value - ed.reference).abs().max() <= 1
    assert ag._cyclic_value(29, 0, 30) == -1 and ag._cyclic_value(2, 0, 30) == 2
    full_rows = long[long.method == "everyone, full field"].set_index(["subject", "measure"])
    ref = subjects.set_index("subject")
    assert full_rows.loc[("acdc001", "LVEDV"), "reference"] == ref.loc["acdc001", "LVEDV"]  # reference.csv's truth


def test_frame_differences_count_cyclically_and_say_how_many_are_within_one_frame():
    from cmrlib.analysis import agreement as ag

    long = pd.DataFrame(dict(cohort=ag.REAL_COHORT, measure=["ED frame"] * 4 + ["LVEF"], method="m",
                             value=[-1, 0, 2, 0, 50.0], reference=[0, 0, 0, 0, 55.0]))
    f = ag.frame_differences(long).set_index("frame")
    assert list(f.index) == ["ED"] and f.loc["ED", "n"] == 4 and f.loc["ED", "mean_abs"] == 0.75
    assert f.loc["ED", "within_1"] == 0.75 and f.loc["ED", "largest"] == 2


def test_the_real_figure_leaves_out_a_frame_whose_reference_never_varies():
    from cmrlib.analysis import agreement as ag

    rng = np.random.default_rng(0)
    rows = [dict(cohort=ag.REAL_COHORT, subject=f"s{i}", measure=m, method=f"run's segmenter, {kind}",
                 value=ref + rng.normal(), reference=ref)
            for i in range(5) for m, kind, ref in (("LVEF", "full field", 40.0 + 5 * i), ("ED frame", "LV curve", 0.0),
                                                    ("ES frame", "LV curve", 10.0 + i))]
    fig = ag.real_figure(pd.DataFrame(rows))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert any(t.startswith("LVEF") for t in titles) and any(t.startswith("ES frame") for t in titles)
    assert not any(t.startswith("ED frame") for t in titles)
