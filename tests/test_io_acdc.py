"""ACDC ingest on the real data: record layout, orientation, GT truths, the 4D patient, and each typed error."""
from __future__ import annotations

import numpy as np
import pytest
from io_fixtures import copy_acdc, load, nii, truncate

from cmrlib.io import (CorruptFileError, MetadataError, MissingFileError, ShapeMismatchError, UnknownLabelError,
                       ingest, read_acdc_patient)
from cmrlib.labels import LV, MYO, RV, LabelError


def test_ed_es_record(acdc_dir):
    c = read_acdc_patient(acdc_dir / "patient001")
    img, z = load(acdc_dir / "patient001" / "patient001_frame01.nii.gz")
    gt, _ = load(acdc_dir / "patient001" / "patient001_frame01_gt.nii.gz")
    assert c.cine_id == "acdc001_SAX" and c.source == "acdc"
    assert c.pixels.shape == (2, img.shape[2], img.shape[1], img.shape[0])
    assert c.spacing == pytest.approx((z[2], z[1], z[0]))
    assert (c.ed, c.es) == (0, 1) and c.labelled.all() and np.isnan(c.frame_times).all()
    np.testing.assert_array_equal(c.pixels[0, 3], img[:, :, 3].T)  # documented orientation: slice transposed
    # ACDC 3 = LV, 1 = RV -> canonical LV, RV
    assert ((c.labels[0] == LV) == (gt == 3).transpose(2, 1, 0)).all()
    assert ((c.labels[0] == RV) == (gt == 1).transpose(2, 1, 0)).all()


def test_gt_truths_match_voxel_counts(acdc_dir):
    """meta volumes = voxel count x voxel volume of the raw masks (independent of the reader), mass = MYO x 1.05."""
    c = read_acdc_patient(acdc_dir / "patient001")
    info = dict(ln.split(":", 1) for ln in (acdc_dir / "patient001" / "Info.cfg").read_text().splitlines())
    ed, z = load(acdc_dir / "patient001" / f"patient001_frame{int(info['ED']):02d}_gt.nii.gz")
    es, _ = load(acdc_dir / "patient001" / f"patient001_frame{int(info['ES']):02d}_gt.nii.gz")
    vox = np.prod(z) / 1000.0
    m = c.meta
    assert m["LVEDV"] == pytest.approx((ed == 3).sum() * vox, rel=1e-4)
    assert m["LVESV"] == pytest.approx((es == 3).sum() * vox, rel=1e-4)
    assert m["RVEDV"] == pytest.approx((ed == 1).sum() * vox, rel=1e-4)
    assert m["LVEF"] == pytest.approx(100 * (1 - (es == 3).sum() / (ed == 3).sum()), rel=1e-3)
    assert m["LVM"] == pytest.approx((ed == 2).sum() * vox * 1.05, rel=1e-4)
    assert m["group"] == info["Group"].strip() and m["nb_frames"] == int(info["NbFrame"])
    assert m["bsa_m2"] == pytest.approx(np.sqrt(m["height_cm"] * m["weight_kg"] / 3600), rel=1e-3)


def test_4d_patient(acdc_dir):
    """patient090: every frame of the cine, labels only at ED/ES (0-based from Info.cfg)."""
    c = read_acdc_patient(acdc_dir / "patient090")
    info = dict(ln.split(":", 1) for ln in (acdc_dir / "patient090" / "Info.cfg").read_text().splitlines())
    ed, es, nb = int(info["ED"]) - 1, int(info["ES"]) - 1, int(info["NbFrame"])
    assert c.n_frames == nb and (c.ed, c.es) == (ed, es)
    assert np.flatnonzero(c.labelled).tolist() == sorted([ed, es])
    frame, _ = load(acdc_dir / "patient090" / f"patient090_frame{ed + 1:02d}.nii.gz")
    np.testing.assert_allclose(c.pixels[ed], frame.transpose(2, 1, 0))
    assert (c.labels[~c.labelled] == 0).all() and (c.labels[ed] == MYO).any()
    assert c.meta["has_4d"] and np.isnan(c.frame_times).all()


def _drop_es(d):
    cfg = d / "Info.cfg"
    cfg.write_text("\n".join(ln for ln in cfg.read_text().splitlines() if not ln.startswith("ES")))
    return cfg


def _delete_frame(d):
    f = sorted(d.glob("*_frame??.nii.gz"))[-1]
    f.unlink()
    return f


def _edit_mask(edit):
    def corrupt(d):
        f = sorted(d.glob("*_gt.nii.gz"))[0]
        m, z = load(f)
        nii(edit(m), f, z)
        return f
    return corrupt


def _label7(m):
    m[0, 0, 0] = 7
    return m


def _info(key: str, value: str):
    """Set one Info.cfg key."""
    def edit(d):
        f = d / "Info.cfg"
        f.chmod(0o644)
        f.write_text("".join(f"{k}: {value}\n" if k == key else f"{k}:{v}\n" for k, v in
                             (ln.split(":", 1) for ln in f.read_text().splitlines() if ":" in ln)))
        return f
    return edit


CORRUPTIONS = {  # name: (make the damage, return the file it hit), expected error, message pattern
    "Info.cfg without ES": (_drop_es, MetadataError, r"lacks key.*ES"),
    "Info.cfg height -5": (_info("Height", "-5"), MetadataError, "Height -5 is outside a human range"),
    "Info.cfg weight NaN": (_info("Weight", "NaN"), MetadataError, "Weight NaN is outside a human range"),
    "Info.cfg ES past the cine": (_info("ES", "99"), MetadataError, r"ES 99 is not a frame of 1\.\.\d+"),
    "missing frame file": (_delete_frame, MissingFileError, "not found"),
    "truncated mask": (lambda d: truncate(sorted(d.glob("*_gt.nii.gz"))[0]), CorruptFileError, "cannot read"),
    "mask shape mismatch": (_edit_mask(lambda m: m[:-4]), ShapeMismatchError, "mask shape"),
    "unknown label value": (_edit_mask(_label7), UnknownLabelError, r"\[7\]"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_damaged_patient_raises_typed_error(case, acdc_dir, tmp_path):
    corrupt, err, pattern = CORRUPTIONS[case]
    d = copy_acdc(acdc_dir, tmp_path, "002")
    f = corrupt(d)
    with pytest.raises(err, match=pattern) as e:
        read_acdc_patient(d)
    assert e.value.path == str(f) and f.name in str(e.value)  # the error names the damaged file
    if err is UnknownLabelError:
        assert isinstance(e.value, LabelError)


@pytest.mark.realdata
def test_full_acdc_ingest(acdc_dir, tmp_path):
    """All 100 patients: 100 SAX cines, stratified splits by exam (each group's 70/15/15 of its exams; patients 074
    and 076, one exam segmented twice, in one split), every mapping anatomically sane."""
    store = ingest("acdc", acdc_dir, tmp_path / "cohort", progress=False)
    m = store.manifest()
    assert len(m) == 100 and store.report()["n_bad"] == 0
    assert m["label_anatomy_ok"].all()
    assert m.set_index("subject").loc[["acdc074", "acdc076"], "split"].nunique() == 1
    exams = m.assign(exam=m["participant"].fillna(m["subject"])).drop_duplicates("exam")
    counts = exams.groupby("group")["split"].value_counts().unstack()
    want = {g: [14, 3, 3] for g in ("DCM", "HCM", "MINF", "RV")} | {"NOR": [14, 2, 3]}  # NOR: 19 exams
    assert counts[["train", "valid", "test"]].T.to_dict("list") == want
    assert m[["LVEDV", "LVESV", "RVEDV", "RVESV", "LVM"]].gt(0).all().all()
    ef = m.groupby("group")["LVEF"].mean()
    assert (m["LVEF"] < 100).all() and ef["DCM"] < ef["NOR"]
