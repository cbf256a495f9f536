"""M&Ms-2 (Martin-Isla et al., IEEE JBHI 2023): SAX and 4CH long axis per subject; labels 1=LV 2=MYO 3=RV.

Layout: `NNN/NNN_{SA,LA}_{ED,ES}.nii.gz` + `_gt.nii.gz`, optional `NNN_{SA,LA}_CINE.nii.gz`, and
`dataset_information.csv` (SUBJECT_CODE, DISEASE, VENDOR, SCANNER, FIELD) anywhere under the root.
Where the cine exists the record holds all its frames and ED/ES are located in it (the frame most similar
to the ED/ES volume); without it the record holds the two key frames (T=2, ed=0, es=1, times NaN).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..record import Cine
from .common import (Item, canonical, check_shape, frame_interval_ms, frame_times, keyframe_cine, load_nifti,
                     match_frame, require, sax_spacing, to_rows_cols, walk, zooms)
from .errors import InconsistentSpacingError, MissingFileError, MixedFrameSizeError, NonCineError
from .mnms import _meta, read_info_csvs

NAME = "mnms2"
VIEWS = {"SA": "SAX", "LA": "4CH"}
MATCH_TOL = 0.05  # mean |z-score difference| above which a located ED/ES frame is flagged in meta


def _vol(path: Path, view: str) -> tuple[np.ndarray, tuple, object]:
    """A key-frame volume: SAX (Z,H,W) or long axis (H,W) in display orientation, with zooms."""
    arr, img = load_nifti(path, dims=3 if view == "SAX" else 2)
    if view != "SAX":
        require(arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1), path,
                f"expected one long-axis slice (X,Y[,1]), got shape {arr.shape}", MixedFrameSizeError)
        arr = arr.reshape(arr.shape[:2])
    else:
        require(arr.ndim == 3, path, f"expected a (X,Y,Z) volume, got shape {arr.shape}", MixedFrameSizeError)
    return to_rows_cols(arr), zooms(img), arr.shape


def _mask(img_path: Path, shape: tuple, view: str) -> np.ndarray | None:
    gt = img_path.with_name(img_path.name.replace(".nii.gz", "_gt.nii.gz"))
    if not gt.exists():
        return None
    m, _ = load_nifti(gt, dims=3 if view == "SAX" else 2)
    if view != "SAX" and m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    check_shape(m, shape, gt, img_path)
    return canonical(to_rows_cols(m), NAME, gt)


def read_mnms2_view(folder: str | Path, prefix: str, subject: str, meta: dict) -> Cine:
    """One view ('SA' or 'LA') of an M&Ms-2 subject as a canonical cine."""
    folder = Path(folder)
    code, view = folder.name, VIEWS[prefix]
    files = {k: folder / f"{code}_{prefix}_{k}.nii.gz" for k in ("ED", "ES", "CINE")}
    for k in ("ED", "ES"):
        require(files[k].exists(), files[k], "file not found", MissingFileError)
    ed_vol, ed_zoom, ed_shape = _vol(files["ED"], view)
    es_vol, es_zoom, es_shape = _vol(files["ES"], view)
    require(ed_vol.shape == es_vol.shape, files["ES"], f"shape {es_vol.shape} != ED {ed_vol.shape}",
            MixedFrameSizeError)
    require(np.allclose(ed_zoom[:3], es_zoom[:3], rtol=1e-3), files["ES"], f"voxel size {es_zoom} != ED {ed_zoom}",
            InconsistentSpacingError)
    ed_m, es_m = _mask(files["ED"], ed_shape, view), _mask(files["ES"], es_shape, view)
    spacing = sax_spacing(ed_zoom) if view == "SAX" else (ed_zoom[1], ed_zoom[0])
    meta = {**meta, "label_source": NAME}
    if files["CINE"].exists():
        arr, img = load_nifti(files["CINE"], dims=3 if view == "SAX" else 2)
        if view != "SAX" and arr.ndim == 4 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        require(arr.ndim == len(ed_shape) + 1 and arr.shape[:-1] == tuple(ed_shape), files["CINE"],
                f"cine shape {arr.shape} does not hold the {tuple(ed_shape)} key frames", MixedFrameSizeError)
        require(arr.shape[-1] >= 2, files["CINE"], "a single frame: not a cine", NonCineError)
        pixels = to_rows_cols(arr).astype(np.float32)
        (ed, d_ed), (es, d_es) = match_frame(pixels, ed_vol), match_frame(pixels, es_vol)
        require(ed != es, files["CINE"], f"ED and ES volumes both match cine frame {ed}")
        interval, how = frame_interval_ms(img)
        times = frame_times(len(pixels), interval)
        meta.update(frame_times=how, ed_match=round(d_ed, 4), es_match=round(d_es, 4),
                    ed_es_located=bool(max(d_ed, d_es) <= MATCH_TOL))
    else:
        pixels, ed, es = np.stack([ed_vol, es_vol]).astype(np.float32), 0, 1
        times = np.full(2, np.nan, np.float32)
        meta.update(frame_times="unknown: ED/ES volumes only (NaN)")
    masks = {i: m for i, m in ((ed, ed_m), (es, es_m)) if m is not None}
    src = files["CINE"] if files["CINE"].exists() else files["ED"]
    return keyframe_cine(src, subject, view, pixels, spacing, times, ed, es, masks, NAME, meta)


def read_mnms2_subject(folder: str | Path, info: dict, subject: str | None = None) -> list[Cine]:
    """Every view present (SAX from `_SA_*`, 4CH from `_LA_*`) of one M&Ms-2 subject."""
    folder = Path(folder)
    subject = subject or f"mnms2-{folder.name}"
    meta = _meta(info, ("SUBJECT_CODE",))
    prefixes = [p for p in VIEWS if (folder / f"{folder.name}_{p}_ED.nii.gz").exists()]
    if not prefixes:
        raise MissingFileError(folder, f"no {folder.name}_SA_ED.nii.gz or {folder.name}_LA_ED.nii.gz")
    return [read_mnms2_view(folder, p, subject, meta) for p in prefixes]


def find(root: str | Path, **_) -> list[Item]:
    """Every `NNN/NNN_{SA,LA}_ED.nii.gz` subject folder under root, with its dataset_information.csv row."""
    root = Path(root)
    info = read_info_csvs(root, "SUBJECT_CODE")
    info.update({k.zfill(3): v for k, v in list(info.items()) if k.isdigit()})
    folders = sorted({p.parent for pat in ("*_SA_ED.nii.gz", "*_LA_ED.nii.gz") for p in walk(root, pat)
                      if p.name.startswith(p.parent.name + "_")})
    return [Item(key=f.name, paths=(f,), subject=f"mnms2-{f.name}", label=str(f),
                 opts={"info": info.get(f.name, {})}) for f in folders]


def read(item: Item, notes: list) -> list[Cine]:
    return read_mnms2_subject(item.paths[0], item.opts["info"], item.subject)
