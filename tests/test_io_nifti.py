"""Generic NIfTI cine reader on the real UK-Biobank-style 4CH cines: view, timing, sidecar, labels, errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from io_fixtures import load, nii, truncate

from cmrlib.io import (CorruptFileError, MetadataError, NonCineError, ShapeMismatchError, UnknownViewError, ingest,
                       read_nifti_cine)
from cmrlib.labels import LA, LV


@pytest.fixture(scope="module")
def lax(data_dir):
    p = data_dir / "ukbb-demo-lax" / "1" / "la_4ch.nii.gz"
    if not p.exists():
        pytest.skip("ukbb-demo-lax not found")
    return p


def test_read_4ch(lax):
    arr, z = load(lax)
    c = read_nifti_cine(lax, view="4CH")
    assert c.view == "4CH" and c.pixels.shape == (arr.shape[3], arr.shape[1], arr.shape[0])
    np.testing.assert_array_equal(c.pixels[5], arr[:, :, 0, 5].T)  # documented orientation
    assert c.spacing == pytest.approx((z[1], z[0]))
    np.testing.assert_allclose(np.diff(c.frame_times), z[3] * 1000, rtol=1e-5)  # pixdim[4] in s -> ms
    assert read_nifti_cine(lax).view == "4CH"  # from the name 'la_4ch'


def test_sidecar_and_labels(lax, tmp_path):
    img = tmp_path / "cine.nii.gz"
    shutil.copy(lax, img)
    arr, z = load(lax)
    lab = np.zeros(arr.shape, np.uint8)
    lab[60:80, 60:90, 0, 0], lab[60:80, 100:120, 0, 0] = 1, 4  # UK Biobank 4CH convention: 1=LV 4=LA
    nii(lab, tmp_path / "cine_seg.nii.gz", z[:3], dt_s=z[3])
    (tmp_path / "cine.json").write_text(json.dumps(dict(view="4CH", ed=0, es=20, subject="s9", frame_interval_ms=20,
                                                        labels="cine_seg.nii.gz", label_source="ukbb_la_4ch")))
    c = read_nifti_cine(img)
    assert (c.subject, c.ed, c.es, c.meta["frame_times"]) == ("s9", 0, 20, "sidecar")
    assert c.frame_times[1] == pytest.approx(20.0)
    assert np.flatnonzero(c.labelled).tolist() == [0]
    assert (c.labels[0] == LV).sum() == 600 and (c.labels[0] == LA).sum() == 400
    assert read_nifti_cine(img, es=30).es == 30  # arguments win over the sidecar


def test_errors(lax, tmp_path):
    arr, z = load(lax)
    nii(arr[:, :, 0, :], tmp_path / "cine_unknown.nii.gz", z[:3])
    with pytest.raises(UnknownViewError, match="cine_unknown"):
        read_nifti_cine(tmp_path / "cine_unknown.nii.gz")
    nii(arr[:, :, :, 0], tmp_path / "sa_ed.nii.gz", z[:3])
    with pytest.raises(NonCineError, match="no time axis"):
        read_nifti_cine(tmp_path / "sa_ed.nii.gz", view="SAX")
    shutil.copy(lax, tmp_path / "la_4ch.nii.gz")
    truncate(tmp_path / "la_4ch.nii.gz")
    with pytest.raises(CorruptFileError, match="la_4ch"):
        read_nifti_cine(tmp_path / "la_4ch.nii.gz")
    nii(np.zeros(arr.shape[:2] + (1, 3), np.uint8), tmp_path / "m.nii.gz", z[:3])
    with pytest.raises(ShapeMismatchError, match="m.nii.gz"):
        read_nifti_cine(lax, labels=tmp_path / "m.nii.gz", label_source="canonical")
    with pytest.raises(MetadataError, match="outside"):
        read_nifti_cine(lax, ed=99)


def test_batch_folder(data_dir, tmp_path):
    store = ingest("nifti", data_dir / "ukbb-demo-lax", tmp_path / "cohort", progress=False)
    assert store.ids() == ["1_4CH", "2_4CH"] and set(store.splits()) == {"1", "2"}


def test_synthetic_sax_batch_without_real_data(tmp_path):
    """Runs everywhere: a made-up SAX cine with a sidecar, a truncated one, and a resumed re-run."""
    r = np.random.default_rng(0)
    for s in ("a", "b"):
        nii(r.random((12, 10, 3, 5)).astype(np.float32), tmp_path / "in" / s / "sa.nii.gz", (1.5, 1.5, 8.0), dt_s=0.04)
    (tmp_path / "in" / "a" / "sa.json").write_text(json.dumps(dict(ed=0, es=2)))
    truncate(tmp_path / "in" / "b" / "sa.nii.gz")
    store = ingest("nifti", tmp_path / "in", tmp_path / "cohort", progress=False)
    c = store.read("a_SAX")
    assert c.pixels.shape == (5, 3, 10, 12) and c.spacing == (8.0, 1.5, 1.5) and (c.ed, c.es) == (0, 2)
    np.testing.assert_allclose(c.frame_times, np.arange(5) * 40.0, rtol=1e-6)
    assert [b["error"] for b in store.report()["bad"]] == ["CorruptFileError"]
    again = ingest("nifti", tmp_path / "in", tmp_path / "cohort", progress=False).report()
    assert again["n_already_done"] == 1 and again["n_bad"] == 1


def test_a_mask_a_sidecar_names_is_never_read_as_a_cine_whatever_its_name(tmp_path):
    """ukbb_cardiac names its 4-chamber segmentation `seg4_la_4ch`: no mask naming rule catches it, the sidecar does."""
    r = np.random.default_rng(0)
    lab = np.zeros((12, 10, 1, 6), np.uint8)
    lab[2:6, 2:6], lab[6:10, 2:6] = 1, 4  # UK Biobank 4CH convention: 1 LV, 4 LA
    for subject, name in (("s1", "a_seg4"), ("s2", "seg4_la_4ch")):  # sorted before and after the cine
        folder = tmp_path / "in" / subject
        nii(r.random((12, 10, 1, 6)).astype(np.float32), folder / "la_4ch.nii.gz", (1.8, 1.8, 8.0), dt_s=0.03)
        nii(lab, folder / f"{name}.nii.gz", (1.8, 1.8, 8.0), dt_s=0.03)
        (folder / "la_4ch.json").write_text(json.dumps(dict(view="4CH", labels=f"{name}.nii.gz",
                                                            label_source="ukbb_la_4ch")))
    store = ingest("nifti", tmp_path / "in", tmp_path / "cohort", progress=False)
    assert store.ids() == ["s1_4CH", "s2_4CH"] and not store.report()["notes"]
    c = store.read("s1_4CH")
    assert c.meta["label_source"] == "ukbb_la_4ch" and (c.labels == LA).sum() == 6 * 16


def test_an_unknown_label_source_names_the_file_that_gave_it(tmp_path):
    lab = np.zeros((12, 10, 1, 6), np.uint8)
    nii(np.random.default_rng(0).random((12, 10, 1, 6)).astype(np.float32), tmp_path / "la_4ch.nii.gz",
        (1.8, 1.8, 8.0), dt_s=0.03)
    nii(lab, tmp_path / "m.nii.gz", (1.8, 1.8, 8.0), dt_s=0.03)
    (tmp_path / "la_4ch.json").write_text(json.dumps(dict(labels="m.nii.gz", label_source="mine")))
    with pytest.raises(MetadataError, match=r"la_4ch.json: unknown label_source 'mine'"):
        read_nifti_cine(tmp_path / "la_4ch.nii.gz")
    with pytest.raises(MetadataError, match=r"la_4ch.nii.gz: unknown label_source 'yours'"):
        read_nifti_cine(tmp_path / "la_4ch.nii.gz", label_source="yours")
