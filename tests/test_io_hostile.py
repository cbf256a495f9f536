"""Hostile and careless inputs to ingest, one test (or more) per defect class; small synthetic files only.

The number in a test's name is the class it pins: 1 subject id used as a path, 2 NaN/Inf pixels, 3 zero or
negative spacing, 4 two inputs mapping to one subject, 5 symlink loops, 6 DICOM frames without TriggerTime,
7 repeat visits across splits, 8 huge declared NIfTI size, 9 CLI mistakes, 10 bad items and empty inputs in the
CLI, 11 report rows that do not name the file or reason, 12 leftovers of a killed run, 13 workers outliving their
parent, 14 non-ASCII identifiers in the report, 15 source paths in run.json and notebooks. No real data: every
file is written under the test's tmp_path.
"""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from cmrlib import cli, runner
from cmrlib.io import (CorruptFileError, IngestError, MetadataError, MissingFramesError, PseudonymError, ingest,
                       read_dicom_series, read_nifti_cine)
from cmrlib.io.batch import update_splits
from cmrlib.io.common import walk
from cmrlib.io.errors import InvalidSpacingError, NonCineError
from cmrlib.record import Cine, RecordError
from cmrlib.store import CohortStore, StoreError

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------- tiny synthetic sources


def nifti(path: Path, arr, zooms=(1.5, 1.5, 8.0, 0.03), sidecar: dict | None = None) -> Path:
    """A NIfTI written with exactly these voxel sizes in its header (zero and negative ones included)."""
    arr = np.asarray(arr)
    img = nib.Nifti1Image(arr, np.eye(4))
    img.header["pixdim"][1:1 + arr.ndim] = zooms[:arr.ndim]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    if sidecar is not None:
        path.with_name(path.name.split(".")[0] + ".json").write_text(json.dumps(sidecar))
    return path


def cine_4ch(frames: int = 6) -> np.ndarray:
    return RNG.integers(0, 500, (16, 16, frames)).astype(np.float32)


def acdc_patient(root: Path, name: str, ed_zoom=(1.5, 1.5, 8.0), es_zoom=(1.5, 1.5, 8.0)) -> Path:
    """An ACDC-layout patient: Info.cfg and two 3D key frames (no masks)."""
    d = root / name
    d.mkdir(parents=True)
    (d / "Info.cfg").write_text("ED: 1\nES: 5\nGroup: NOR\nHeight: 170\nWeight: 70\nNbFrame: 10\n")
    vol = RNG.integers(0, 500, (12, 12, 4)).astype(np.int16)
    nifti(d / f"{name}_frame01.nii.gz", vol, ed_zoom)
    nifti(d / f"{name}_frame05.nii.gz", vol, es_zoom)
    return d


def dicom(path: Path, *, t: float | None, inst: int | None, series: str, desc: str = "cine 4ch",
          spacing=(1.5, 1.5), name: str = "Doe^Jane") -> Path:
    """One 16 x 16 MR image with the cine tags that matter (TriggerTime, InstanceNumber, geometry)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID, series
    ds.PatientName, ds.PatientID, ds.SeriesDescription, ds.Modality = name, "PID-123", desc, "MR"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelSpacing = [str(s) for s in spacing]
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [0, 0, 0]
    if inst is not None:
        ds.InstanceNumber = inst
    if t is not None:
        ds.TriggerTime = t
    ds.PixelData = RNG.integers(0, 1000, (16, 16)).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def dicom_cine(folder: Path, n: int = 8, untimed=(), no_instance=(), **kw) -> Path:
    uid = generate_uid()
    for i in range(n):
        dicom(folder / f"IM{i:03d}.dcm", t=None if i in untimed else 30.0 * i,
              inst=None if i in no_instance else i + 1, series=uid, **kw)
    return folder


class Hung(BaseException):
    """Raised by `within`; a BaseException so that a batch's per-item error handling cannot swallow it."""


def within(seconds: int, fn, *args, **kw):
    """fn(*args, **kw), failing the test instead of hanging when it runs longer (a followed link loop does)."""
    def stop(*_):
        raise Hung(f"{getattr(fn, '__name__', fn)} still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return fn(*args, **kw)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# ---------------------------------------------------------------- 1. path traversal (security)


@pytest.mark.parametrize("subject", ["../../escaped", "ABSOLUTE", "..", "a/b", "x" * 65, "-rf"])
def test_1_sidecar_subject_never_becomes_a_path(tmp_path, subject):
    subject = str(tmp_path / "escaped" / "abs") if subject == "ABSOLUTE" else subject
    victim = tmp_path / "escaped"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    src = tmp_path / "in"
    side = nifti(src / "s1" / "la_4ch.nii.gz", cine_4ch(), sidecar={"subject": subject, "view": "4CH"})
    nifti(src / "s2" / "la_4ch.nii.gz", cine_4ch())
    outside_before = files_under(tmp_path) - files_under(src)
    store = ingest("nifti", src, tmp_path / "out" / "cohort", progress=False)
    assert store.ids() == ["s2_4CH"]
    (bad,) = store.report()["bad"]
    assert bad["error"] == "MetadataError" and bad["file"] == "s1/la_4ch.json" and "not letters" in bad["message"]
    new = files_under(tmp_path) - files_under(src) - outside_before
    assert all(p.is_relative_to(tmp_path / "out" / "cohort") or p == tmp_path / "out" for p in new)
    assert (victim / "keep.txt").read_text() == "precious" and sorted(victim.iterdir()) == [victim / "keep.txt"]


def test_1_writer_refuses_unsafe_ids_itself(tmp_path):
    """The record and the store check again, whatever a reader let through."""
    with pytest.raises(RecordError, match="subject id"):
        Cine(subject="../x", view="4CH", pixels=np.zeros((2, 4, 4)), spacing=(1, 1), frame_times=[0, 30])
    store = CohortStore(tmp_path / "c")
    for bad in ("../x_4CH", "/etc/passwd", "a/../../b"):
        with pytest.raises(StoreError):
            store.path(bad)
        assert bad not in store
    (tmp_path / "c" / "cines").mkdir(parents=True)
    os.symlink(tmp_path, tmp_path / "c" / "cines" / "s1_4CH.zarr")  # a planted link out of the cohort
    with pytest.raises(ValueError, match="outside"):
        store.write(Cine(subject="s1", view="4CH", pixels=np.zeros((2, 4, 4)), spacing=(1, 1), frame_times=[0, 30]))


# ---------------------------------------------------------------- 2. NaN / Inf pixels


def test_2_nan_and_inf_pixels_rejected_with_their_count(tmp_path):
    a = cine_4ch()
    a[0, 0, 0], a[1, 1, 1], a[2, 2, 2] = np.nan, np.inf, -np.inf
    f = nifti(tmp_path / "in" / "s1" / "la_4ch.nii.gz", a)
    with pytest.raises(CorruptFileError, match=f"3 of {a.size} values are NaN or infinite") as e:
        read_nifti_cine(f)
    assert e.value.path == str(f)
    store = ingest("nifti", tmp_path / "in", tmp_path / "c", progress=False)
    assert len(store) == 0 and store.report()["bad"][0]["file"] == "s1/la_4ch.nii.gz"


# ---------------------------------------------------------------- 3. zero / negative spacing


@pytest.mark.parametrize("zooms", [(1.5, 0.0, 8.0, 0.03), (-1.5, 1.5, 8.0, 0.03), (1.5, 1.5, 0.0, 0.03)])
def test_3_non_positive_nifti_spacing_rejected_not_repaired(tmp_path, zooms):
    f = nifti(tmp_path / "sa.nii.gz", RNG.random((8, 8, 3, 4)).astype(np.float32), zooms)
    with pytest.raises(InvalidSpacingError, match="must be positive") as e:
        read_nifti_cine(f, "SAX")
    assert e.value.path == str(f)


@pytest.mark.parametrize("bad_frame", ["01", "05"])
def test_3_spacing_error_names_the_frame_that_has_it(tmp_path, bad_frame):
    zero = (1.5, 0.0, 8.0)
    acdc_patient(tmp_path / "in", "patient001", **{("ed_zoom" if bad_frame == "01" else "es_zoom"): zero})
    store = ingest("acdc", tmp_path / "in", tmp_path / "c", progress=False)
    (bad,) = store.report()["bad"]
    assert bad["error"] == "InvalidSpacingError" and bad["file"] == f"patient001/patient001_frame{bad_frame}.nii.gz"


def test_3_dicom_pixel_spacing_zero_is_a_typed_error_naming_the_file(tmp_path):
    dicom_cine(tmp_path / "s1", spacing=(0.0, 1.5))
    with pytest.raises(InvalidSpacingError, match="PixelSpacing") as e:
        read_dicom_series(tmp_path / "s1", "4CH")
    assert e.value.path == "file 1 of 8"  # by its place in the folder, never its name


# ---------------------------------------------------------------- 4. two inputs, one subject


def test_4_colliding_subject_ids_are_an_error_naming_both(tmp_path):
    for name in ("patient001", "patient001_old", "patient002"):
        acdc_patient(tmp_path / "in", name)
    store = ingest("acdc", tmp_path / "in", tmp_path / "c", progress=False)
    assert store.ids() == ["acdc002_SAX"]
    bad = {b["file"]: b for b in store.report()["bad"]}
    assert set(bad) == {"patient001", "patient001_old"}
    assert "patient001_old" in bad["patient001"]["message"] and "patient001" in bad["patient001_old"]["message"]
    assert all(b["error"] == "MetadataError" and b["subject"] == "acdc001" for b in bad.values())


# ---------------------------------------------------------------- 5. symlink loops


def test_5_symlink_loops_walked_once(tmp_path):
    root = tmp_path / "in"
    d = acdc_patient(root, "patient001")
    os.symlink(root, d / "loop")  # patient001/loop -> the whole tree again
    os.symlink(d, root / "again")  # a second name for the same patient
    assert len(within(20, walk, root, "Info.cfg")) == 1
    store = within(20, ingest, "acdc", root, tmp_path / "c", progress=False)
    assert store.report()["n_subjects"] == 1 and store.ids() == ["acdc001_SAX"]


def test_5_dicom_loop_is_not_read_but_recorded(tmp_path):
    root = tmp_path / "in"
    dicom_cine(root / "s1", desc="cine 4ch")
    os.symlink(root, root / "s1" / "loop")
    os.symlink(root, root / "zz_loop")
    store = within(20, ingest, "dicom", root, tmp_path / "c", progress=False)
    (bad,) = store.report()["bad"]  # recorded with its reason, never a subject read, never left out unseen
    assert store.ids() == ["s1_4CH"] and store.report()["n_subjects"] == 2 and "link back" in bad["message"]
    assert store.read("s1_4CH").n_frames == 8


# ---------------------------------------------------------------- 6. a frame without TriggerTime


def test_6_untimed_frame_ordered_by_instance_number_with_a_note(tmp_path):
    dicom_cine(tmp_path / "in" / "s1", untimed=(3, 7))
    store = ingest("dicom", tmp_path / "in", tmp_path / "c", progress=False)
    c = store.read("s1_4CH")
    np.testing.assert_allclose(c.frame_times, 30.0 * np.arange(8))
    (n,) = [n for n in store.report()["notes"] if n["error"] == "MissingTriggerTime"]
    assert "2 of 8" in n["message"]


def test_6_untimed_frame_that_cannot_be_ordered_is_a_bad_item(tmp_path):
    dicom_cine(tmp_path / "in" / "s1", untimed=(3,), no_instance=(3,))
    store = ingest("dicom", tmp_path / "in", tmp_path / "c", progress=False)
    (bad,) = store.report()["bad"]
    assert len(store) == 0 and bad["error"] == "MissingFramesError" and bad["file"] == "file 4 of 8"
    with pytest.raises(MissingFramesError):
        read_dicom_series(tmp_path / "in" / "s1")


# ---------------------------------------------------------------- 7. repeat visits share a split


def test_7_splits_are_by_participant_not_by_visit(tmp_path):
    from cmrlib.io import ukbb

    for eid in ("1000001", "1000002"):
        for inst in ("2", "3"):
            (tmp_path / "zips" / f"{eid}_20208_{inst}_0.zip").parent.mkdir(exist_ok=True)
            (tmp_path / "zips" / f"{eid}_20208_{inst}_0.zip").write_bytes(b"")
    items = ukbb.find(tmp_path / "zips")
    for it, name in zip(items, ("ukbb000001", "ukbb000001-i3", "ukbb000002", "ukbb000002-i3"), strict=True):
        it.subject = name
    assert [it.participant for it in items] == ["ukbb000001"] * 2 + ["ukbb000002"] * 2

    store = CohortStore(tmp_path / "c")
    for p in range(40):
        for visit in ("", "-i3"):
            store.write(Cine(subject=f"ukbb{p:06d}{visit}", view="4CH", pixels=np.zeros((2, 4, 4)), spacing=(1, 1),
                             frame_times=[0, 30], meta={"participant": f"ukbb{p:06d}"} if visit else {}))
    splits = update_splits(store, seed=1)
    assert all(splits[f"ukbb{p:06d}"] == splits[f"ukbb{p:06d}-i3"] for p in range(40))
    assert set(splits.values()) == {"train", "valid", "test"}


# ---------------------------------------------------------------- 8. huge declared size


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_8_huge_declared_image_refused_before_reading(tmp_path, suffix):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((2048, 2048, 64, 50))
    hdr.set_data_dtype(np.float32)
    hdr["pixdim"][1:5] = (1, 1, 1, 0.03)
    hdr["vox_offset"] = 352
    raw = hdr.binaryblock + b"\0" * 4 + b"\0" * 4096
    f = tmp_path / f"la_4ch{suffix}"
    f.write_bytes(gzip.compress(raw) if suffix == ".nii.gz" else raw)
    with pytest.raises(CorruptFileError) as e:
        read_nifti_cine(f, "SAX")
    assert e.value.path == str(f) and ("GiB" in e.value.problem or "cannot hold" in e.value.problem)


def test_8_truncated_uncompressed_nifti_is_named(tmp_path):
    f = nifti(tmp_path / "la_4ch.nii", cine_4ch())
    f.write_bytes(f.read_bytes()[:600])
    with pytest.raises(CorruptFileError, match="truncated"):
        read_nifti_cine(f)


# ---------------------------------------------------------------- 9-10. the command line


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_9_user_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    src = tmp_path / "in"
    nifti(src / "s1" / "la_4ch.nii.gz", cine_4ch())
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = {
        "input folder not found": ["ingest", "nifti", str(tmp_path / "nope"), "--out", str(tmp_path / "c1")],
        "is a file": ["ingest", "nifti", str(a_file), "--out", str(tmp_path / "c2")],
        "existing file": ["ingest", "nifti", str(src), "--out", str(a_file)],
        "pseudonym": ["ingest", "ukbb", str(src), "--out", str(tmp_path / "c3")],
        "outside the cohort": ["ingest", "dicom", str(src), "--out", str(tmp_path / "c4"),
                               "--pseudonyms", str(tmp_path / "c4" / "ids.csv")],
    }
    for why, args in cases.items():
        code, out, err = _cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and why in err and "Traceback" not in err, (why, err)
    with pytest.raises(SystemExit) as e:
        cli.main(["ingest", "nosuch", str(src), "--out", str(tmp_path / "c5")])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_10_bad_items_printed_and_nothing_ingested_fails(tmp_path, capsys):
    src = tmp_path / "in"
    for i in range(25):
        f = nifti(src / f"s{i:02d}" / "la_4ch.nii.gz", cine_4ch())
        f.write_bytes(f.read_bytes()[:100])
    code, out, err = _cli(capsys, "ingest", "nifti", str(src), "--out", str(tmp_path / "c"))
    lines = err.strip().splitlines()
    assert code == 1 and sum(ln.startswith("bad: s") for ln in lines) == 20 and "5 more" in err
    assert "s00/la_4ch.nii.gz: CorruptFileError" in err and "0 subject(s) ingested, 0 already done, 25 bad" in out
    (src / "empty").mkdir()
    code, out, err = _cli(capsys, "ingest", "nifti", str(src / "empty"), "--out", str(tmp_path / "c2"))
    assert code == 2 and "no nifti subject found" in err and not (tmp_path / "c2").exists()


def test_10_empty_store_has_a_readable_manifest(tmp_path):
    store = CohortStore(tmp_path / "c")
    (tmp_path / "c").mkdir()
    assert store.manifest(refresh=True).empty and store.manifest().empty and store.select(view="SAX") == []


# ---------------------------------------------------------------- 11. every report row names a file and why


def test_11_no_cine_says_which_file_and_why(tmp_path):
    dicom(tmp_path / "in" / "s1" / "IM000.dcm", t=0.0, inst=1, series=generate_uid(), desc="localizer")
    store = ingest("dicom", tmp_path / "in", tmp_path / "c", progress=False)
    (bad,) = store.report()["bad"]
    assert bad["file"] == "file 1 of 1" and "localizer" in bad["message"]
    nifti(tmp_path / "nii" / "s1" / "sa_ED.nii.gz", RNG.random((8, 8, 3)).astype(np.float32))  # a key frame only
    store = ingest("nifti", tmp_path / "nii", tmp_path / "c2", progress=False)
    (bad,) = store.report()["bad"]
    assert bad["file"] == "s1/sa_ED.nii.gz" and bad["error"] == "IngestError"
    assert "no cine found" in bad["message"] and "no time axis" in bad["message"]


# ---------------------------------------------------------------- 12. leftovers of a killed run


def test_12_temporaries_cleaned_and_manifest_follows_the_disk(tmp_path):
    src = tmp_path / "in"
    for s in ("s1", "s2"):
        nifti(src / s / "la_4ch.nii.gz", cine_4ch())
    out = tmp_path / "c"
    store = ingest("nifti", src, out, progress=False)
    assert store.report()["status"] == "complete"
    # what a kill leaves: a half-written cine, a temporary report, and a finished cine no table knows of
    (out / "cines" / ".s3_4CH.zarr.0123.tmp" / "pixels").mkdir(parents=True)
    (out / ".report.json.0123.tmp").write_text("{")
    store.write(Cine(subject="s9", view="4CH", pixels=np.zeros((2, 4, 4)), spacing=(1, 1), frame_times=[0, 30]))
    assert "s9_4CH" in set(store.manifest()["cine_id"])  # the cached manifest is rebuilt from what is on disk
    assert store.unsplit_subjects() == {"s9"}
    ingest("nifti", src, out, progress=False)
    assert not list(out.rglob(".*.tmp")) and store.unsplit_subjects() == set()
    assert len(store.select(split=None)) == 3


def test_12_one_writer_at_a_time(tmp_path):
    from cmrlib.store import StoreBusyError

    nifti(tmp_path / "in" / "s1" / "la_4ch.nii.gz", cine_4ch())
    store = CohortStore(tmp_path / "c")
    with store.writer(), pytest.raises(StoreBusyError, match="another process"):
        ingest("nifti", tmp_path / "in", tmp_path / "c", progress=False)


# ---------------------------------------------------------------- 13. workers stop with their parent

PARENT = """
import os, time
from cmrlib.dask_tasks import client
if __name__ == "__main__":
    with client("local", 1) as c:
        print(c.submit(os.getpid, pure=False).result(), flush=True)
        c.submit(time.sleep, 120, pure=False)
        time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to watch the worker")
def test_13_workers_stop_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(p.stdout.readline())
    assert _alive(worker)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 20
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker)


# ---------------------------------------------------------------- 14-15. privacy


def test_14_non_ascii_identifier_scrubbed_from_the_report(tmp_path):
    src = tmp_path / "in"
    dicom_cine(src / "MÜLLER^HANS", name="MÜLLER^HANS")
    (src / "MÜLLER^HANS" / "IM003.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")  # a damaged frame
    store = ingest("dicom", src, tmp_path / "c", pseudonym_file=tmp_path / "ids.csv", progress=False)
    (bad,) = store.report()["bad"]
    assert bad["subject"] == "sub000001" and bad["file"] == "file 4 of 8"
    text = (tmp_path / "c" / "report.json").read_text()
    assert "MÜLLER" not in text and "M\\u00dcLLER" not in text and "LLER" not in text


def test_15_source_paths_never_reach_run_json_or_the_notebook(tmp_path, monkeypatch):
    import nbformat

    private = tmp_path / "MÜLLER_HANS" / "dicoms"
    private.mkdir(parents=True)
    (private / "marker.txt").write_text("found")
    data = tmp_path / "data"
    (data / "acdc").mkdir(parents=True)
    monkeypatch.delenv("CMRLIB_DATA", raising=False)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("run_dir = 'x'\ndata_dir = None\nsource_path = None\nlabels_csv = None\n")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(
        "from cmrlib.utils import data_path, data_root\n"
        "assert (data_path(source_path) / 'marker.txt').read_text() == 'found'\n"
        "assert data_path(labels_csv) == data_root(data_dir) / 'acdc'\n"
        "print('read', len(str(data_path(source_path))))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nbs / "00_x.ipynb")
    plan = runner.plan(str(_profile(tmp_path)), overrides=dict(source_path=str(private), data_dir=str(data),
                                                                labels_csv=str(data / "acdc")),
                       out=tmp_path / "run", notebooks=nbs)
    params = plan.steps[0][1]
    assert params["data_dir"] == "$CMRLIB_DATA" and params["labels_csv"] == "$CMRLIB_DATA/acdc"
    assert params["source_path"].startswith("$CMRLIB_PATH_")
    runner.execute(plan, log=lambda *_: None)
    for f in (tmp_path / "run" / "run.json", tmp_path / "run" / "notebooks" / "00_x.ipynb"):
        text = f.read_text()
        assert "LLER" not in text and str(data) not in text, f


def _profile(tmp_path: Path) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text("common: {}\n")
    return p


def test_a_huge_or_hugely_declared_dicom_frame_is_refused_before_it_is_read(tmp_path):
    """A PixelData element of 3 GiB (a sparse file) or a frame declared 30000 x 30000 pixels: one typed error
    naming the file by its place, within seconds, nothing decoded."""
    huge = dicom_cine(tmp_path / "huge", n=4)
    with open(huge / "IM001.dcm", "r+b") as f:
        f.truncate(3 * 2**30)  # sparse: the disk holds no 3 GiB
    with pytest.raises(NonCineError, match=r"file 2 of 4: a file of 3072 MB: larger than any single cine frame"):
        within(20, read_dicom_series, huge, "4CH")
    wide = dicom_cine(tmp_path / "wide", n=4)
    ds = pydicom.dcmread(wide / "IM002.dcm")
    ds.Rows = ds.Columns = 30000
    ds.save_as(wide / "IM002.dcm", enforce_file_format=True)
    with pytest.raises(CorruptFileError, match=r"file 3 of 4: declared 30000 x 30000 pixels"):
        within(20, read_dicom_series, wide, "4CH")
