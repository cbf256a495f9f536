"""Any NIfTI cine: SAX (X,Y,Z,T) or long axis (X,Y,T) / (X,Y,1,T), with an optional JSON sidecar.

Sidecar `<name>.json` beside `<name>.nii.gz` (every key optional; explicit arguments win):
    {"view": "4CH", "ed": 0, "es": 12, "subject": "s01", "frame_interval_ms": 17.5 | "frame_times": [...],
     "labels": "<name>_gt.nii.gz", "label_source": "canonical", "labelled": [0, 12], "meta": {...}}
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..labels import SOURCE_MAPS
from ..record import Cine
from .common import (NIFTI_SUFFIXES, Item, canonical, check_shape, frame_interval_ms, frame_times, guess_view,
                     load_nifti, make_cine, nifti_stem, note, require, walk, sax_spacing, to_rows_cols, zooms)
from .errors import IngestError, MetadataError, MissingFramesError, NonCineError, UnknownViewError

NAME = "nifti"
LABEL_TAGS = ("_gt", "_seg", "_label", "_labels", "_mask")  # files ending so (or 'label_*', 'seg_*') are masks


def sidecar_path(path: str | Path) -> Path:
    """`x.nii.gz` -> `x.json`."""
    path = Path(path)
    return path.with_name(nifti_stem(path) + ".json")


def read_sidecar(path: str | Path) -> dict:
    """The sidecar JSON of a NIfTI file ({} when absent); malformed JSON raises MetadataError."""
    p = sidecar_path(path)
    if not p.exists():
        return {}
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise MetadataError(p, f"sidecar is not valid JSON ({e})") from e
    require(isinstance(d, dict), p, "sidecar must be a JSON object", MetadataError)
    return d


def _frames(arr: np.ndarray, view: str, path: Path) -> np.ndarray:
    """Stored (X,Y[,Z],T) -> (T,Z,H,W) for SAX or (T,H,W) for long axis, checking there is a time axis."""
    if arr.ndim == 5 and arr.shape[3] == 1:  # (X,Y,Z,1,T) as some converters write it
        arr = arr[:, :, :, 0]
    if view == "SAX":
        require(arr.ndim == 4, path, f"a SAX cine needs (X,Y,Z,T); shape {arr.shape} has no time axis"
                if arr.ndim == 3 else f"a SAX cine needs (X,Y,Z,T), got shape {arr.shape}", NonCineError)
    else:
        if arr.ndim == 4:
            require(arr.shape[2] == 1, path, f"a {view} cine holds one slice; shape {arr.shape} has "
                                             f"{arr.shape[2]}", IngestError)
            arr = arr[:, :, 0]
        require(arr.ndim == 3, path, f"a {view} cine needs (X,Y,T) or (X,Y,1,T), got shape {arr.shape}",
                NonCineError)
    require(arr.shape[-1] >= 2, path, f"only {arr.shape[-1]} frame: not a cine", NonCineError)
    return to_rows_cols(arr)


def _times(n: int, img, side: dict, interval: float | None, path: Path) -> tuple[np.ndarray, str]:
    """Frame times (ms) from an argument, the sidecar, or the header, and where they came from."""
    if interval is not None:
        return frame_times(n, interval), "argument"
    if "frame_times" in side:
        t = np.asarray(side["frame_times"], dtype=np.float32)
        require(t.shape == (n,), sidecar_path(path), f"frame_times has {t.size} values for {n} frames",
                MissingFramesError)
        return t, "sidecar"
    if "frame_interval_ms" in side:
        return frame_times(n, float(side["frame_interval_ms"])), "sidecar"
    dt, how = frame_interval_ms(img)
    return frame_times(n, dt), how


def read_nifti_cine(path: str | Path, view: str | None = None, ed: int | None = None, es: int | None = None, *,
                    subject: str | None = None, labels: str | Path | None = None, label_source: str | None = None,
                    frame_interval_ms: float | None = None, source: str = NAME) -> Cine:
    """One NIfTI cine as a canonical record; view/ED/ES/labels from the arguments, else the sidecar, else the name."""
    path = Path(path)
    side = read_sidecar(path)
    view = view or side.get("view") or guess_view(nifti_stem(path))
    if view is None:
        raise UnknownViewError(path, "cannot tell the view from the file name; pass view= or add a sidecar "
                                     "{\"view\": \"SAX|2CH|3CH|4CH\"}")
    view = str(view).upper()
    dims = 3 if view == "SAX" else 2
    arr, img = load_nifti(path, dims)
    pixels = _frames(arr, view, path).astype(np.float32)
    z = zooms(img)
    spacing = sax_spacing(z) if view == "SAX" else (z[1], z[0])
    times, how = _times(pixels.shape[0], img, side, frame_interval_ms, path)
    ed = side.get("ed") if ed is None else ed
    es = side.get("es") if es is None else es
    meta = {**side.get("meta", {}), "frame_times": how}
    lab = labelled = None
    lab_path = labels or side.get("labels")
    if lab_path:
        lab_path = path.parent / lab_path if not Path(lab_path).is_absolute() else Path(lab_path)
        src = label_source or side.get("label_source", "canonical")
        require(src in SOURCE_MAPS, path if label_source else sidecar_path(path),  # where the name was given
                f"unknown label_source {str(src)[:40]!r}; one of {sorted(SOURCE_MAPS)}", MetadataError)
        m, _ = load_nifti(lab_path, dims)
        check_shape(m, arr.shape, lab_path, path)
        lab = canonical(_frames(m, view, lab_path), src, lab_path)
        frames = side.get("labelled")
        labelled = np.zeros(len(lab), bool)
        if frames is not None:
            require(all(0 <= int(i) < len(lab) for i in frames), sidecar_path(path),
                    f"labelled frames {frames} outside 0..{len(lab) - 1}", MetadataError)
            labelled[[int(i) for i in frames]] = True
        else:
            labelled = lab.reshape(len(lab), -1).any(axis=1)
        meta["label_source"] = src
    return make_cine(path, subject=subject or side.get("subject") or nifti_stem(path), view=view, pixels=pixels,
                     spacing=spacing, frame_times=times, labels=lab, labelled=labelled, ed=ed, es=es, source=source,
                     meta=meta)


def is_mask_name(path: str | Path) -> bool:
    """Mask files by naming convention (`*_gt`, `*_seg`, `label_*`, `seg_*` ...)."""
    s = nifti_stem(path).lower()
    return s.endswith(LABEL_TAGS) or s.startswith(("label_", "seg_"))


def _pair_mask(path: Path) -> Path | None:
    """The mask beside an image by convention: `<stem>_gt` / `_seg` / `label_<stem>` / `seg_<stem>`."""
    stem = nifti_stem(path)
    for s in NIFTI_SUFFIXES:
        for name in [stem + t for t in LABEL_TAGS] + [f"label_{stem}", f"seg_{stem}"]:
            if (path.parent / (name + s)).exists():
                return path.parent / (name + s)
    return None


def _named_masks(files: list[Path]) -> set[Path]:
    """The files some sidecar names as its cine's `labels` (whatever they are called, e.g. ukbb_cardiac's
    `seg4_la_4ch`): label maps, never cines."""
    out = set()
    for f in files:
        try:
            lab = read_sidecar(f).get("labels")
        except MetadataError:
            continue
        if isinstance(lab, str):
            out.add((f.parent / lab).resolve())
    return out


def find(root: str | Path, **_) -> list[Item]:
    """One item per subject: NIfTI images grouped by sidecar 'subject', else by their folder below root; masks
    (by name, or named by a sidecar) are not items."""
    root = Path(root)
    files = sorted(p for s in NIFTI_SUFFIXES for p in walk(root, f"*{s}"))
    masks = _named_masks(files)
    groups: dict[str, list[Path]] = {}
    origin: dict[str, Path] = {}
    for f in files:
        if is_mask_name(f) or f.resolve() in masks:
            continue
        try:
            subj = read_sidecar(f).get("subject")
        except MetadataError:
            subj = None
        if subj is not None:
            origin.setdefault(str(subj), sidecar_path(f))
        else:
            rel = f.parent.relative_to(root) if f.parent != root and root.is_dir() else None
            subj = str(rel).replace("/", "-") if rel else nifti_stem(f)
        groups.setdefault(str(subj), []).append(f)
    return [Item(key=k, paths=tuple(v), subject=k, label=str(v[0].parent), origin=origin.get(k))
            for k, v in sorted(groups.items())]


def read(item: Item, notes: list) -> list[Cine]:
    """Every cine of a subject; non-cine volumes (e.g. `sa_ED.nii.gz`) and unknown views become notes.

    A mask found beside an image by name is used only when the sidecar says its `label_source`: guessing a
    label convention is how volumes get silently corrupted.
    """
    out = []
    for f in item.paths:
        side = read_sidecar(f)
        labels = None
        if not side.get("labels") and (m := _pair_mask(f)) is not None:
            if side.get("label_source"):
                labels = m
            else:
                notes.append(dict(file=str(m), error="IgnoredMask", message="mask found but the sidecar gives no "
                                  "label_source; add one to use it"))
        try:
            out.append(read_nifti_cine(f, subject=item.subject, labels=labels))
        except (NonCineError, UnknownViewError) as e:
            notes.append(note(e))
    return out
