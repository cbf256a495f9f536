"""Builders for the ingest tests: fake M&Ms / M&Ms-2 / UK Biobank / DICOM folders made at run time from the real
data at hand (ACDC masks remapped into each source's convention, the MVnet DICOM sample), plus corrupted copies.
Nothing here is committed data: every file is written under a test's tmp_path.
"""
from __future__ import annotations

import copy
import io
import os
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.uid import generate_uid

ACDC_TO_MNMS = np.array([0, 3, 2, 1], dtype=np.uint8)  # ACDC 1=RV 3=LV -> M&Ms 1=LV 3=RV (MYO stays 2)


def nii(arr, path: Path, zooms, dt_s: float | None = None) -> Path:
    """Write a NIfTI with the given voxel size (and frame interval in seconds for 4D)."""
    img = nib.Nifti1Image(np.asarray(arr), np.diag([-zooms[0], -zooms[1], zooms[2], 1.0]))
    img.header.set_zooms(tuple(zooms) + ((dt_s or 1.0,) if np.asarray(arr).ndim == 4 else ()))
    if dt_s:
        img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def load(path: Path) -> tuple[np.ndarray, tuple]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms())


def acdc_frames(acdc_dir: Path, pid: str):
    """(ED image, ES image, ED gt, ES gt, zooms[:3], 4D or None, ED 0-based, ES 0-based) of one ACDC patient."""
    d = acdc_dir / f"patient{pid}"
    info = dict(ln.split(":", 1) for ln in (d / "Info.cfg").read_text().splitlines() if ":" in ln)
    ed, es = int(info["ED"]), int(info["ES"])
    (ed_i, z), (es_i, _) = (load(d / f"patient{pid}_frame{n:02d}.nii.gz") for n in (ed, es))
    ed_g, es_g = (load(d / f"patient{pid}_frame{n:02d}_gt.nii.gz")[0] for n in (ed, es))
    c4 = d / f"patient{pid}_4d.nii.gz"
    return ed_i, es_i, ed_g, es_g, z[:3], (load(c4)[0] if c4.exists() else None), ed - 1, es - 1


# ---------------------------------------------------------------- ACDC copies


def link_acdc(acdc_dir: Path, root: Path, pids) -> Path:
    """An ACDC-like folder of symlinks to real patients (cheap)."""
    root.mkdir(parents=True, exist_ok=True)
    for p in pids:
        os.symlink(acdc_dir / f"patient{p}", root / f"patient{p}")
    return root


def copy_acdc(acdc_dir: Path, root: Path, pid: str) -> Path:
    """A real copy of one patient (to corrupt)."""
    dst = root / f"patient{pid}"
    shutil.copytree(acdc_dir / f"patient{pid}", dst)
    for f in dst.iterdir():
        f.chmod(0o644)
    return dst


def truncate(path: Path, keep: float = 0.5) -> Path:
    b = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(b[: int(len(b) * keep)])
    return path


# ---------------------------------------------------------------- M&Ms and M&Ms-2 from ACDC


def make_mnms(acdc_dir: Path, root: Path) -> Path:
    """Two M&Ms subjects: A1B2C3 from patient090 (full cine) and D4E5F6 from patient001 (ED/ES as a 2-frame cine)."""
    lines = ["External code,VendorName,Vendor,Centre,ED,ES"]
    for code, pid, vendor in (("A1B2C3", "090", "Siemens"), ("D4E5F6", "001", "Philips")):
        ed_i, es_i, ed_g, es_g, z, c4, ed, es = acdc_frames(acdc_dir, pid)
        if c4 is None:
            c4, ed, es = np.stack([ed_i, es_i], -1), 0, 1
        gt = np.zeros(c4.shape, np.uint8)
        gt[..., ed], gt[..., es] = ACDC_TO_MNMS[ed_g], ACDC_TO_MNMS[es_g]
        nii(c4.astype(np.float32), root / "Training" / "Labeled" / code / f"{code}_sa.nii.gz", z, dt_s=0.03)
        nii(gt, root / "Training" / "Labeled" / code / f"{code}_sa_gt.nii.gz", z, dt_s=0.03)
        lines.append(f"{code},{vendor},{vendor[0]},1,{ed},{es}")
    (root / "mnms_info.csv").write_text("\n".join(lines) + "\n")
    return root


def make_mnms2(acdc_dir: Path, root: Path, seed: int = 0) -> Path:
    """M&Ms-2 subjects 001 (from patient090: SA/LA ED, ES, CINE with noise) and 002 (patient001: ED/ES only)."""
    r = np.random.default_rng(seed)
    lines = ["SUBJECT_CODE,DISEASE,VENDOR,SCANNER,FIELD"]
    for code, pid, cine in (("001", "090", True), ("002", "001", False)):
        d = root / "dataset" / code
        ed_i, es_i, ed_g, es_g, z, c4, ed, es = acdc_frames(acdc_dir, pid)
        zm = int(np.argmax((ed_g == 3).sum(axis=(0, 1))))  # largest-LV slice stands in for a long-axis image
        for k, im, g in (("ED", ed_i, ed_g), ("ES", es_i, es_g)):
            nii(im.astype(np.float32), d / f"{code}_SA_{k}.nii.gz", z)
            nii(ACDC_TO_MNMS[g], d / f"{code}_SA_{k}_gt.nii.gz", z)
            nii(im[:, :, zm:zm + 1].astype(np.float32), d / f"{code}_LA_{k}.nii.gz", z)
            nii(ACDC_TO_MNMS[g[:, :, zm:zm + 1]], d / f"{code}_LA_{k}_gt.nii.gz", z)
        if cine:
            noisy = c4 + r.normal(0, 0.01 * c4.std(), c4.shape)
            nii(noisy.astype(np.float32), d / f"{code}_SA_CINE.nii.gz", z, dt_s=0.035)
            nii(noisy[:, :, zm:zm + 1].astype(np.float32), d / f"{code}_LA_CINE.nii.gz", z, dt_s=0.035)
        lines.append(f"{int(code)},{'ARR' if cine else 'NOR'},SIEMENS,Avanto,1.5")
    (root / "dataset_information.csv").write_text("\n".join(lines) + "\n")
    return root


# ---------------------------------------------------------------- DICOM


def sample_files(data_dir: Path, view: str = "4ch") -> list[Path]:
    """The sample cine's files in trigger-time order (so files[:n] are n consecutive frames)."""
    fs = sorted((data_dir / "mvnet-dicom-sample" / view).glob("*.dcm"))
    return sorted(fs, key=lambda f: float(pydicom.dcmread(str(f), stop_before_pixels=True).TriggerTime))


def save(ds: pydicom.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def identify(ds: pydicom.Dataset, name="Doe^Jane", pid="PID-9988776", birth="19450101") -> pydicom.Dataset:
    """Put identifiers into a copy, so tests can check none reaches an output."""
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, pid, birth
    return ds


def copy_series(files: list[Path], dst: Path, desc: str | None = None, uid: str | None = None, edit=None) -> Path:
    """Copy a sample cine as one proper series (shared SeriesInstanceUID, InstanceNumber), optionally edited."""
    uid = uid or generate_uid()
    for i, f in enumerate(files):
        ds = pydicom.dcmread(str(f))
        ds.SeriesInstanceUID, ds.InstanceNumber, ds.CardiacNumberOfImages = uid, i + 1, len(files)
        if desc:
            ds.SeriesDescription = desc
        if edit:
            ds = edit(i, ds) or ds
        save(ds, dst / f"IM{i:04d}.dcm")
    return dst


def sax_datasets(files: list[Path], n_slices: int = 4, gap: float = 8.0, order=None, desc="CINE_segmented_SAX_b{k}"):
    """A fake SAX stack from a long-axis sample: slice k is the cine shifted k*gap mm along the plane normal, with
    k*1000 added to its pixels so tests can tell which slice landed where. Yields (k, frame index, dataset)."""
    base = [pydicom.dcmread(str(f)) for f in files]
    iop = np.asarray(base[0].ImageOrientationPatient, float)
    n = np.cross(iop[:3], iop[3:])
    for k in (order if order is not None else range(n_slices)):
        uid = generate_uid()
        for t, src in enumerate(base):
            ds = copy.deepcopy(src)
            ds.SeriesInstanceUID, ds.InstanceNumber, ds.CardiacNumberOfImages = uid, t + 1, len(base)
            ds.SeriesDescription = desc.format(k=k + 1)
            ds.ImagePositionPatient = [float(x) for x in np.asarray(src.ImagePositionPatient, float) + k * gap * n]
            ds.PixelData = (src.pixel_array.astype(np.uint16) + 1000 * k).tobytes()
            yield k, t, ds


def write_sax(files: list[Path], dst: Path, **kw) -> Path:
    for k, t, ds in sax_datasets(files, **kw):
        save(ds, dst / f"S{k}" / f"IM{t:04d}.dcm")
    return dst


def ukbb_zip(path: Path, eid: str, series: dict[str, list[pydicom.Dataset]], manifest_name="manifest.cvs") -> Path:
    """A UK-Biobank-style zip: DICOM members with UID-like names and a manifest with the real quirks (misspelt
    'series discription' column, a comma inside the date, the EID in a patientid column)."""
    rows = ["filename,patientid,studyid,aet,host,date,time,series discription"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        i = 0
        for desc, dss in series.items():
            for ds in dss:
                name = f"1.3.12.2.1107.5.2.18.{i}.dcm"
                buf = io.BytesIO()
                identify(ds, pid=eid).save_as(buf, enforce_file_format=True)
                zf.writestr(name, buf.getvalue())
                rows.append(f"{name},{eid},1,AET,host,Jan 5, 2016,10:00:00,{desc}")
                i += 1
        zf.writestr(manifest_name, "\n".join(rows) + "\n")
    return path


def tree_contains(root: Path, needle: str) -> list[Path]:
    """Every file under root whose bytes contain needle."""
    b = needle.encode()
    return [p for p in root.rglob("*") if p.is_file() and b in p.read_bytes()]
