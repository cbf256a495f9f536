"""Generic DICOM reader on the real Siemens sample: grouping, ordering, SAX stacking, privacy and each typed error."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from io_fixtures import copy_series, identify, sample_files, save, tree_contains, write_sax

from cmrlib.io import (CorruptFileError, InconsistentSpacingError, MissingFramesError, MixedFrameSizeError,
                       NoPixelDataError, NonCineError, UnknownViewError, ingest, read_dicom_series)
from cmrlib.io.dicom import APEX_LPS


@pytest.fixture(scope="module")
def files(data_dir):
    fs = sample_files(data_dir, "4ch")
    if not fs:
        pytest.skip("MVnet DICOM sample not found")
    return fs


def test_sample_cines(data_dir, files):
    """The anonymised sample (every file its own series UID) still gives one 30-frame cine per folder."""
    cines = read_dicom_series(data_dir / "mvnet-dicom-sample", subject="s")
    assert sorted(c.view for c in cines) == ["2CH", "4CH"]
    c = next(c for c in cines if c.view == "4CH")
    dss = [pydicom.dcmread(str(f)) for f in files]
    times = sorted(float(d.TriggerTime) for d in dss)
    first = min(dss, key=lambda d: float(d.TriggerTime))
    assert c.n_frames == len(files) and c.pixels.shape[1:] == (first.Rows, first.Columns)
    np.testing.assert_allclose(c.frame_times, times, rtol=1e-6)
    np.testing.assert_array_equal(c.pixels[0], first.pixel_array)  # DICOM rows/cols kept as stored
    assert c.spacing == pytest.approx(tuple(float(x) for x in first.PixelSpacing))
    assert c.meta["view_from"] == "its folder's name" and c.meta["grouped_by"].startswith("geometry")


def test_sax_stack_order_and_spacing(files, tmp_path):
    """Slices written in shuffled order are stacked base -> apex along the normal, spacing = the slice gap."""
    write_sax(files[:6], tmp_path / "sax", n_slices=4, gap=8.0, order=[2, 0, 3, 1])
    (c,) = read_dicom_series(tmp_path / "sax")
    assert c.view == "SAX" and c.pixels.shape[:2] == (6, 4) and c.spacing[0] == pytest.approx(8.0)
    k = np.round(c.pixels[0].reshape(4, -1).min(axis=1) / 1000).astype(int)  # which written slice sits at each z
    assert sorted(k) == [0, 1, 2, 3]
    iop = np.asarray(pydicom.dcmread(str(files[0])).ImageOrientationPatient, float)
    n = np.cross(iop[:3], iop[3:])
    along_apex = k * 8.0 * (n @ APEX_LPS)
    assert (np.diff(along_apex) > 0).all()  # z runs toward the apex


def test_view_from_description_and_parameter(files, tmp_path):
    copy_series(files[:5], tmp_path / "a", desc="CINE_segmented_LAX_2Ch")
    assert [c.view for c in read_dicom_series(tmp_path / "a")] == ["2CH"]
    assert [c.view for c in read_dicom_series(tmp_path / "a", view="3CH")] == ["3CH"]
    copy_series(files[:5], tmp_path / "b" / "series1", desc="cine")
    with pytest.raises(UnknownViewError, match="cannot tell the view"):
        read_dicom_series(tmp_path / "b")


def test_identifiers_never_reach_outputs(files, tmp_path):
    copy_series(files[:6], tmp_path / "in" / "subj" / "la", desc="4ch", edit=lambda i, ds: identify(ds))
    store = ingest("dicom", tmp_path / "in", tmp_path / "cohort", progress=False)
    assert store.ids() == ["subj_4CH"]
    for needle in ("Doe^Jane", "PID-9988776", "19450101", "Jane"):
        assert not tree_contains(tmp_path / "cohort", needle), needle
    assert "manufacturer" in store.read("subj_4CH").meta


# ---------------------------------------------------------------- damaged input: one typed error each


def test_truncated_file(files, tmp_path):
    d = copy_series(files[:5], tmp_path / "s", desc="4ch")
    f = d / "IM0002.dcm"
    f.write_bytes(f.read_bytes()[:-5000])
    with pytest.raises(CorruptFileError, match="file 3 of 5"):  # by its place, never its name
        read_dicom_series(d)


def test_no_pixel_data(files, tmp_path):
    def strip(i, ds):
        if i == 3:
            del ds.PixelData
    d = copy_series(files[:5], tmp_path / "s", desc="4ch", edit=strip)
    with pytest.raises(NoPixelDataError, match="file 4 of 5"):
        read_dicom_series(d)


def test_mixed_frame_sizes(files, tmp_path):
    def crop(i, ds):
        if i == 2:
            a = ds.pixel_array[:-8]
            ds.Rows, ds.PixelData = a.shape[0], a.tobytes()
    d = copy_series(files[:5], tmp_path / "s", desc="4ch", edit=crop)
    with pytest.raises(MixedFrameSizeError, match="file 3 of 5"):
        read_dicom_series(d)


def test_missing_frames(files, tmp_path):
    d = copy_series(files, tmp_path / "s", desc="4ch")
    times = {f: float(pydicom.dcmread(str(f)).TriggerTime) for f in d.glob("*.dcm")}
    mid = sorted(times, key=times.get)[len(times) // 2]
    mid.unlink()  # a frame from the middle of the cycle
    with pytest.raises(MissingFramesError, match="missing frames|CardiacNumberOfImages"):
        read_dicom_series(d)


def test_inconsistent_stack_spacing(files, tmp_path):
    d = write_sax(files[:4], tmp_path / "sax", n_slices=4, gap=8.0)
    for f in (d / "S2").glob("*.dcm"):
        ds = pydicom.dcmread(str(f))
        ds.PixelSpacing = [1.5, 1.5]
        save(ds, f)
    with pytest.raises(InconsistentSpacingError, match="pixel spacing"):
        read_dicom_series(d)


def test_uneven_slice_gap(files, tmp_path):
    d = write_sax(files[:4], tmp_path / "sax", n_slices=5, gap=8.0, order=[0, 1, 3, 4])  # slice 2 missing
    with pytest.raises(InconsistentSpacingError, match="uneven slice gaps"):
        read_dicom_series(d)


def test_non_cine_series(files, tmp_path):
    copy_series(files[:1], tmp_path / "one", desc="4ch")
    with pytest.raises(NonCineError, match="single frame"):
        read_dicom_series(tmp_path / "one")

    def untime(i, ds):
        del ds.TriggerTime
    copy_series(files[:4], tmp_path / "untimed", desc="4ch", edit=untime)
    with pytest.raises(NonCineError, match="TriggerTime"):
        read_dicom_series(tmp_path / "untimed")


def test_non_cine_series_beside_a_cine_is_noted(files, tmp_path):
    copy_series(files[:5], tmp_path / "s" / "cine", desc="4ch")
    copy_series(files[:1], tmp_path / "s" / "localizer", desc="localizer")
    notes = []
    (c,) = read_dicom_series(tmp_path / "s", notes=notes)
    roles = sorted((n["series"]["role"], n["series"]["reason"]) for n in notes if n["error"] == "Series")
    assert c.view == "4CH" and roles == [("cine 4CH", "its description"),
                                         ("skipped", "survey / localizer (its description)")]


def test_batch_subjects(data_dir, files, tmp_path):
    """View-named sub-folders are one subject's views; other sub-folders are subjects."""
    store = ingest("dicom", data_dir / "mvnet-dicom-sample", tmp_path / "one", progress=False)
    assert store.ids() == ["mvnet-dicom-sample_2CH", "mvnet-dicom-sample_4CH"]
    for s in ("p1", "p2"):
        copy_series(files[:5], tmp_path / "in" / s / "series7", desc="4ch")
    assert ingest("dicom", tmp_path / "in", tmp_path / "two", progress=False).ids() == ["p1_4CH", "p2_4CH"]
