"""M&Ms and M&Ms-2 ingest on fixtures built from real ACDC data (labels remapped into the M&Ms convention)."""
from __future__ import annotations

import numpy as np
import pytest
from io_fixtures import load, make_mnms, make_mnms2, nii

from cmrlib.io import (MetadataError, MixedFrameSizeError, ShapeMismatchError, ingest, read_acdc_patient,
                       read_mnms2_subject, read_mnms_subject)
from cmrlib.io.mnms import read_info_csvs


@pytest.fixture(scope="module")
def mnms_root(acdc_dir, tmp_path_factory):
    return make_mnms(acdc_dir, tmp_path_factory.mktemp("mnms"))


@pytest.fixture(scope="module")
def mnms2_root(acdc_dir, tmp_path_factory):
    return make_mnms2(acdc_dir, tmp_path_factory.mktemp("mnms2"))


def test_mnms_ingest(mnms_root, acdc_dir, tmp_path):
    store = ingest("mnms", mnms_root, tmp_path / "cohort", progress=False)
    assert store.ids() == ["mnms-A1B2C3_SAX", "mnms-D4E5F6_SAX"] and store.report()["n_bad"] == 0
    c, ref = store.read("mnms-A1B2C3_SAX"), read_acdc_patient(acdc_dir / "patient090")
    assert (c.ed, c.es) == (ref.ed, ref.es) and c.n_frames == ref.n_frames
    np.testing.assert_array_equal(c.labelled, ref.labelled)
    np.testing.assert_array_equal(c.labels, ref.labels)  # M&Ms 1=LV and ACDC 3=LV land on the same canonical map
    np.testing.assert_allclose(c.pixels, ref.pixels)
    np.testing.assert_allclose(np.diff(c.frame_times), 30.0, rtol=1e-5)  # pixdim[4] = 0.03 s
    assert c.meta["vendor_name"] == "Siemens" and c.meta["centre"] == 1
    assert c.meta["LVEDV"] == pytest.approx(ref.meta["LVEDV"])


def test_mnms_missing_csv_row(mnms_root):
    d = mnms_root / "Training" / "Labeled" / "A1B2C3"
    with pytest.raises(MetadataError, match="A1B2C3"):
        read_mnms_subject(d, {})


def test_mnms_mask_shape_mismatch(mnms_root, tmp_path):
    import shutil
    d = shutil.copytree(mnms_root / "Training" / "Labeled" / "D4E5F6", tmp_path / "D4E5F6")
    gt = d / "D4E5F6_sa_gt.nii.gz"
    m, z = load(gt)
    nii(m[:, :-2], gt, z[:3], dt_s=0.03)
    with pytest.raises(ShapeMismatchError, match=gt.name):
        read_mnms_subject(d, read_info_csvs(mnms_root, "External code")["D4E5F6"])


def test_mnms2_locates_ed_es_in_cine(mnms2_root, acdc_dir):
    info = read_info_csvs(mnms2_root, "SUBJECT_CODE")
    cines = {c.view: c for c in read_mnms2_subject(mnms2_root / "dataset" / "001", info["1"])}
    ref = read_acdc_patient(acdc_dir / "patient090")
    sax, la = cines["SAX"], cines["4CH"]
    assert (sax.ed, sax.es) == (ref.ed, ref.es) and sax.meta["ed_es_located"]  # found despite the added noise
    np.testing.assert_array_equal(sax.labels, ref.labels)
    assert sax.meta["disease"] == "ARR" and sax.meta["field"] == 1.5
    np.testing.assert_allclose(np.diff(sax.frame_times), 35.0, rtol=1e-5)
    assert la.pixels.ndim == 3 and la.n_frames == sax.n_frames and (la.ed, la.es) == (sax.ed, sax.es)
    assert la.spacing == sax.spacing[1:]
    np.testing.assert_array_equal(np.flatnonzero(la.labelled), [ref.ed, ref.es])


def test_mnms2_without_cine(mnms2_root, tmp_path):
    store = ingest("mnms2", mnms2_root, tmp_path / "cohort", progress=False)
    assert store.ids() == ["mnms2-001_4CH", "mnms2-001_SAX", "mnms2-002_4CH", "mnms2-002_SAX"]
    c = store.read("mnms2-002_SAX")
    assert c.n_frames == 2 and (c.ed, c.es) == (0, 1) and np.isnan(c.frame_times).all() and c.labelled.all()
    assert c.meta["disease"] == "NOR"  # CSV code 2 matched to folder 002


def test_mnms2_cine_shape_mismatch(mnms2_root, tmp_path):
    import shutil
    d = shutil.copytree(mnms2_root / "dataset" / "001", tmp_path / "001")
    f = d / "001_SA_CINE.nii.gz"
    a, z = load(f)
    nii(a[:-3], f, z[:3], dt_s=0.035)
    with pytest.raises(MixedFrameSizeError, match=f.name):
        read_mnms2_subject(d, {})


def test_subject_is_all_or_nothing(mnms2_root, tmp_path, monkeypatch):
    """The 4CH write fails after the SAX cine was written: the subject leaves no cine behind and is reported."""
    import zarr
    real = zarr.Group.create_array

    def failing(self, name, *a, data=None, **k):
        if name == "pixels" and data is not None and data.ndim == 3:
            raise OSError("disk full (simulated)")
        return real(self, name, *a, data=data, **k)
    monkeypatch.setattr(zarr.Group, "create_array", failing)
    store = ingest("mnms2", mnms2_root, tmp_path / "cohort", progress=False)
    assert store.ids() == [] and {b["subject"] for b in store.report()["bad"]} == {"mnms2-001", "mnms2-002"}
    assert not list(store.cines_dir.iterdir())
