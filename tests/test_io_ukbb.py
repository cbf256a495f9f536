"""UK Biobank zips built from the real DICOM sample: layout, manifest quirks, pseudonyms, and the EID never leaking."""
from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
from io_fixtures import sample_files, sax_datasets, tree_contains, ukbb_zip
from pydicom.uid import generate_uid

from cmrlib.io import PseudonymError, ingest, read_ukbb_subject
from cmrlib.io.ukbb import parse_manifest

EID, EID2 = "7654321", "7000123"


def _series(files, desc, study=None):
    """One series of sample files; `study`: the StudyInstanceUID of the visit it belongs to (the sample's 2CH and 4CH
    were anonymised as two studies, a visit's series share one)."""
    uid = generate_uid()
    out = []
    for i, f in enumerate(files):
        ds = pydicom.dcmread(str(f))
        ds.SeriesInstanceUID, ds.InstanceNumber, ds.CardiacNumberOfImages = uid, i + 1, len(files)
        ds.StudyInstanceUID = study or ds.StudyInstanceUID
        ds.SeriesDescription = desc
        out.append(ds)
    return out


@pytest.fixture(scope="module")
def zips(data_dir, tmp_path_factory):
    """Two subjects: EID has LAX (2CH, 4CH + a flow series) and SAX zips; EID2's LAX zip is corrupt."""
    f2, f4 = sample_files(data_dir, "2ch"), sample_files(data_dir, "4ch")
    if not f2 or not f4:
        pytest.skip("MVnet DICOM sample not found")
    root = tmp_path_factory.mktemp("ukbb") / "zips"
    ukbb_zip(root / f"{EID}_20208_2_0.zip", EID, {
        "CINE_segmented_LAX_2Ch": _series(f2[:10], "CINE_segmented_LAX_2Ch", pydicom.dcmread(f4[0]).StudyInstanceUID),
        "CINE_segmented_LAX_4Ch": _series(f4[:10], "CINE_segmented_LAX_4Ch"),
        "flow_250_tp_AoV_bh_ePAT@c": _series(f4[:3], "flow_250_tp_AoV_bh_ePAT@c")})
    sax: dict[str, list] = {}
    for k, _t, ds in sax_datasets(f4[:8], n_slices=3, gap=10.0):
        sax.setdefault(f"CINE_segmented_SAX_b{k + 1}", []).append(copy.deepcopy(ds))
    ukbb_zip(root / f"{EID}_20209_2_0.zip", EID, sax, manifest_name="manifest.csv")
    bad = root / f"{EID2}_20208_2_0.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    return root


def test_read_subject(zips):
    notes = []
    cines = {c.view: c for c in read_ukbb_subject(sorted(zips.glob(f"{EID}_*.zip")), "ukbb000001", notes)}
    assert sorted(cines) == ["2CH", "4CH", "SAX"]
    assert cines["SAX"].pixels.shape[:2] == (8, 3) and cines["SAX"].spacing[0] == pytest.approx(10.0)
    assert cines["4CH"].n_frames == 10 and cines["2CH"].meta["field"] == "20208"
    assert np.all(np.diff(cines["4CH"].frame_times) > 0)
    assert any("flow_250" in n["message"] for n in notes)  # the non-cine series is skipped with a note


def test_manifest_date_comma():
    m = parse_manifest("filename,patientid,date,series discription\na.dcm,1,Jan 5, 2016,CINE_segmented_LAX_4Ch\n", "m")
    assert m == {"a.dcm": "CINE_segmented_LAX_4Ch"}


def test_ingest_pseudonymises(zips, tmp_path):
    pfile = tmp_path / "private" / "pseudonyms.csv"
    store = ingest("ukbb", zips, tmp_path / "cohort", pseudonym_file=pfile, progress=False)
    names = dict(line.split(",") for line in pfile.read_text().split()[1:])
    assert sorted(names) == sorted([EID, EID2]) and len(set(names.values())) == 2
    assert store.ids() == [f"{names[EID]}_{v}" for v in ("2CH", "4CH", "SAX")]
    rep = store.report()
    assert rep["n_bad"] == 1 and rep["bad"][0]["error"] == "CorruptFileError"
    assert rep["bad"][0]["file"] == f"{names[EID2]}_20208.zip"  # the bad zip is named by its pseudonym
    for eid in (EID, EID2):
        assert not tree_contains(tmp_path / "cohort", eid), f"EID {eid} leaked into the cohort"
    assert EID in pfile.read_text() and (pfile.stat().st_mode & 0o077) == 0
    # a re-run with the same mapping keeps every pseudonym
    store2 = ingest("ukbb", zips, tmp_path / "cohort2", pseudonym_file=pfile, progress=False)
    assert store2.ids() == store.ids()


def test_pseudonym_file_required_and_outside(zips, tmp_path):
    with pytest.raises(PseudonymError, match="pseudonym_file"):
        ingest("ukbb", zips, tmp_path / "cohort", progress=False)
    with pytest.raises(PseudonymError, match="outside"):
        ingest("ukbb", zips, tmp_path / "cohort", pseudonym_file=tmp_path / "cohort" / "p.csv", progress=False)


@pytest.mark.parametrize("content", [b"\x00\xff\xfe garbage", b"", b"name,who\nx,y\n"])
def test_a_damaged_pseudonym_file_is_one_line_that_never_names_it(zips, tmp_path, capsys, content):
    from cmrlib import cli, runner

    pfile = tmp_path / "MUELLER_HANS_ids.csv"  # a user who named the file after a person
    pfile.write_bytes(content)
    code = cli.main(["ingest", "ukbb", str(zips), "--out", str(tmp_path / "cohort"), "--pseudonyms", str(pfile)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "the pseudonym file" in err and "MUELLER" not in err
    refs = runner.path_references(dict(pseudonym_file=str(pfile), source_path=str(zips)), {"CMRLIB_DATA": str(tmp_path)})
    assert "MUELLER" not in str(refs) and refs["pseudonym_file"].startswith("$CMRLIB_PATH_")
