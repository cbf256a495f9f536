"""ACDC (Bernard et al., IEEE TMI 2018): SAX ED/ES volumes with masks, optional 4D cine; labels 1=RV 2=MYO 3=LV.

Layout: `patientNNN/Info.cfg` (ED, ES 1-based; Group, Height, Weight, NbFrame),
`patientNNN_frameXX.nii.gz` + `_gt.nii.gz` at the ED and ES frames, optionally `patientNNN_4d.nii.gz`.

A folder of cropped cines (`acdc-cine/`) holds `reference.csv` beside its patient folders: the volumes, EF and mass
from the full, uncropped manual labels. When present, those are each subject's truths (`truth_from` says so), never
the crop's own masks, which cut part of the heart.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..record import Cine
from .common import (BODY, Item, body_meta, canonical, check_shape, frame_interval_ms, frame_times, keyframe_cine,
                     load_nifti, require, sax_spacing, to_rows_cols, walk, zooms)
from .errors import InconsistentSpacingError, MetadataError, MissingFileError, MissingFramesError, MixedFrameSizeError

NAME = "acdc"
INFO_KEYS = ("ED", "ES", "Group", "Height", "Weight", "NbFrame")
HUMAN = {"Height": BODY["height_cm"], "Weight": BODY["weight_kg"], "NbFrame": (2, 1000)}  # cm, kg, frames (NaN fails)
NO_TIMING = "unknown: ACDC gives no frame timing (NaN)"
REFERENCE = "reference.csv"  # beside the patient folders of cropped cines: truths from the full manual labels
REFERENCE_TRUTHS = ("LVEDV", "LVESV", "LVEF", "RVEDV", "RVESV", "RVEF", "LVM")
REFERENCE_FROM = "reference.csv (ACDC's full, uncropped manual labels)"
SAME_EXAM = (("acdc074", "acdc076"),)  # one exam segmented twice in ACDC: always in one split, or an observer pair


def exam_of(subject: str) -> str:
    """The exam an ACDC subject belongs to (the first subject of its `SAME_EXAM` group, else itself): splits and
    folds keep one exam together, and it counts once."""
    return next((g[0] for g in SAME_EXAM if subject in g), subject)


def acdc_subject(folder_name: str) -> str:
    """'patient001' -> 'acdc001' (ACDC ids are already anonymous)."""
    digits = re.sub(r"\D", "", folder_name)
    return f"acdc{digits or folder_name}"


def read_info(path: str | Path) -> dict:
    """Info.cfg as a dict (ED/ES/NbFrame int, Height/Weight float); missing or bad keys raise MetadataError."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "Info.cfg not found")
    kv = dict(ln.split(":", 1) for ln in path.read_text(errors="replace").splitlines() if ":" in ln)
    kv = {k.strip(): v.strip() for k, v in kv.items()}
    missing = [k for k in INFO_KEYS if not kv.get(k)]
    require(not missing, path, f"Info.cfg lacks key(s) {missing}", MetadataError)
    try:
        info = dict(ED=int(kv["ED"]), ES=int(kv["ES"]), Group=kv["Group"], Height=float(kv["Height"]),
                    Weight=float(kv["Weight"]), NbFrame=int(kv["NbFrame"]))
    except ValueError as e:
        raise MetadataError(path, f"Info.cfg has a malformed value ({e})") from e
    for key, (low, high) in HUMAN.items():
        require(low <= info[key] <= high, path, f"Info.cfg {key} {kv[key]} is outside a human range ({low:g}-{high:g})",
                MetadataError)
    for key in ("ED", "ES"):
        require(1 <= info[key] <= info["NbFrame"], path, f"Info.cfg {key} {info[key]} is not a frame of "
                f"1..{info['NbFrame']}", MetadataError)
    return info


def _frame(folder: Path, pid: str, n: int) -> tuple[np.ndarray, tuple, np.ndarray | None, Path]:
    """One ED/ES volume (Z,H,W), its zooms and canonical mask (Z,H,W) or None."""
    f = folder / f"{pid}_frame{n:02d}.nii.gz"
    arr, img = load_nifti(f, dims=3)
    require(arr.ndim == 3, f, f"expected a 3D (X,Y,Z) frame, got shape {arr.shape}", MixedFrameSizeError)
    g = folder / f"{pid}_frame{n:02d}_gt.nii.gz"
    mask = None
    if g.exists():
        m, _ = load_nifti(g, dims=3)
        check_shape(m, arr.shape, g, f)
        mask = canonical(to_rows_cols(m), NAME, g)
    return to_rows_cols(arr).astype(np.float32), zooms(img), mask, f


def read_reference(root: str | Path) -> dict[str, dict] | None:
    """Folder name -> truths (volumes in mL, EF in %, mass in g; `lv_in_crop`) from `reference.csv` beside the
    patient folders, or None when the folder has none."""
    import pandas as pd

    f = Path(root) / REFERENCE
    if not f.is_file():
        return None
    try:
        tab = pd.read_csv(f)
        tab = tab[["patient", *REFERENCE_TRUTHS, "lv_in_crop"]].set_index("patient").astype(float)
    except (ValueError, KeyError, pd.errors.ParserError) as e:
        raise MetadataError(f, f"not a reference table ({type(e).__name__}: {str(e)[:80]})") from None
    return {str(k): {c: (round(v, 3) if np.isfinite(v) else None) for c, v in row.items()} for k, row in
            tab.iterrows()}


def with_reference(cine: Cine, truths: dict) -> Cine:
    """The cine with the reference's truths in place of its own masks' (a crop's masks cut part of the heart)."""
    cine.meta = {k: v for k, v in cine.meta.items() if k not in ("LVSV", "RVSV")}
    cine.meta.update(truths, truth_from=REFERENCE_FROM)
    return cine


def read_acdc_patient(folder: str | Path, subject: str | None = None, reference: dict | None = None) -> Cine:
    """One ACDC patient -> a SAX cine: ED and ES frames (T=2, ed=0, es=1), or all frames when the 4D cine exists;
    `reference`: truths from the full labels that replace those of the masks beside it."""
    folder = Path(folder)
    pid = folder.name
    info = read_info(folder / "Info.cfg")
    ed1, es1, nb = info["ED"], info["ES"], info["NbFrame"]
    require(1 <= ed1 <= nb and 1 <= es1 <= nb and ed1 != es1, folder / "Info.cfg",
            f"ED={ed1}, ES={es1} do not fit NbFrame={nb}", MetadataError)
    ed_vol, ed_zoom, ed_mask, ed_file = _frame(folder, pid, ed1)
    es_vol, es_zoom, es_mask, es_file = _frame(folder, pid, es1)
    require(ed_vol.shape == es_vol.shape, es_file, f"shape {es_vol.shape} != ED frame shape {ed_vol.shape}",
            MixedFrameSizeError)
    require(np.allclose(ed_zoom, es_zoom, rtol=1e-3), es_file, f"voxel size {es_zoom} != ED frame {ed_zoom}",
            InconsistentSpacingError)
    spacing = sax_spacing(ed_zoom)
    meta = dict(group=info["Group"], nb_frames=nb, **body_meta(info["Height"], info["Weight"]), frame_times=NO_TIMING,
                label_source=NAME)
    subject = subject or acdc_subject(pid)
    if exam_of(subject) != subject:  # one exam segmented twice: the split groups by participant
        meta["participant"] = exam_of(subject)
    cine4d = folder / f"{pid}_4d.nii.gz"
    if cine4d.exists():
        arr, img = load_nifti(cine4d)
        require(arr.ndim == 4 and arr.shape[:3] == ed_vol.shape[::-1], cine4d,
                f"shape {arr.shape} does not hold the {ed_vol.shape[::-1]} frames", MixedFrameSizeError)
        require(arr.shape[3] == nb, cine4d, f"{arr.shape[3]} frames, Info.cfg says NbFrame={nb}", MissingFramesError)
        require(np.allclose(zooms(img)[:3], ed_zoom, rtol=1e-3), cine4d,
                f"voxel size {zooms(img)[:3]} != ED frame {ed_zoom}", InconsistentSpacingError)
        pixels = to_rows_cols(arr).astype(np.float32)
        ed, es = ed1 - 1, es1 - 1
        interval, how = frame_interval_ms(img)
        times = frame_times(nb, interval)
        meta.update(frame_times=how if np.isfinite(interval) else NO_TIMING, has_4d=True)
    else:
        pixels, ed, es, times = np.stack([ed_vol, es_vol]), 0, 1, np.full(2, np.nan, np.float32)
        meta.update(has_4d=False, source_frames=[ed1 - 1, es1 - 1])
    masks = {i: m for i, m in ((ed, ed_mask), (es, es_mask)) if m is not None}
    cine = keyframe_cine(ed_file, subject, "SAX", pixels, spacing, times, ed, es, masks, NAME, meta)
    return with_reference(cine, reference) if reference is not None else cine


def find(root: str | Path, **_) -> list[Item]:
    """Every patient folder (one holding Info.cfg) under root; root may itself be a patient folder."""
    root = Path(root)
    folders = sorted({p.parent for p in walk(root, "Info.cfg")})
    refs = {f.parent: read_reference(f.parent) for f in folders}  # a cropped-cine folder's reference.csv
    return [Item(key=f.name, paths=(f,), subject=acdc_subject(f.name), label=str(f),
                 opts=dict(reference=refs[f.parent].get(f.name)) if refs[f.parent] else {}) for f in folders]


def read(item: Item, notes: list) -> list[Cine]:
    if "reference" in item.opts and item.opts["reference"] is None:
        raise MetadataError(item.paths[0].parent / REFERENCE, f"no row for {item.paths[0].name}")
    return [read_acdc_patient(item.paths[0], item.subject, item.opts.get("reference"))]
