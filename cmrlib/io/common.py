"""Pieces every source shares: NIfTI loading and orientation, view guessing, label mapping, key frames, GT truths.

Orientation convention (all sources): arrays are (row, col) in DICOM display orientation. DICOM pixel arrays
are used as stored (rows top to bottom). NIfTI volumes (i, j, k, t) are reversed to (t, k, j, i), i.e. each
slice is transposed: NIfTI files converted from DICOM with an affine built from ImageOrientationPatient (UK
Biobank / ukbb_cardiac, nibabel, ACDC, M&Ms) store `pixel_array.T`, so the transpose restores the scanner view.
"""
from __future__ import annotations

import fnmatch
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..labels import LabelError, to_canonical
from ..record import Cine
from .errors import CorruptFileError, IngestError, MissingFileError, ShapeMismatchError, labels_error

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class Item:
    """One subject to ingest: what to read and how reports may name it.

    key: the source's own subject id (may be private, e.g. a UK Biobank EID: it is scrubbed from every report).
    subject: the pseudonymous subject id cines are stored under (set by the driver when pseudonyms apply).
    label: how reports name the item; '{subject}' is filled in once the subject is known.
    """

    key: str
    paths: tuple[Path, ...]
    subject: str | None = None
    label: str = "{subject}"
    private: bool = False
    suffix: str = ""
    opts: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.label.replace("{subject}", str(self.subject))


# ---------------------------------------------------------------- NIfTI


def nifti_stem(path: str | Path) -> str:
    """File name without .nii / .nii.gz."""
    name = Path(path).name
    for s in NIFTI_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return Path(name).stem


def load_nifti(path: str | Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Array (as stored, i j k [t]) and image of a NIfTI file; truncated or unreadable files raise CorruptFileError."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "file not found")
    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj)
    except (EOFError, OSError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as e:
        raise CorruptFileError(path, f"cannot read NIfTI ({type(e).__name__}: {e})") from e
    return arr, img


def zooms(img: nib.Nifti1Image) -> tuple[float, ...]:
    return tuple(float(z) for z in img.header.get_zooms())


def to_rows_cols(arr: np.ndarray) -> np.ndarray:
    """NIfTI (i, j[, k[, t]]) -> ([t,] [k,] j, i): every slice transposed to display orientation (see module doc)."""
    return np.ascontiguousarray(np.transpose(arr))


def sax_spacing(z: tuple[float, ...]) -> tuple[float, float, float]:
    """(slice spacing, sy, sx) from NIfTI zooms (di, dj, dk, ...): rows run along j, columns along i."""
    return (z[2], z[1], z[0])


def frame_interval_ms(img: nib.Nifti1Image) -> tuple[float, str]:
    """Frame interval in ms from pixdim[4] and the time unit, with how it was decided ('unknown' -> NaN)."""
    h = img.header
    if h["dim"][0] < 4:
        return float("nan"), "unknown (no time axis)"
    dt = float(h["pixdim"][4])
    unit = h.get_xyzt_units()[1]
    scale = {"sec": 1000.0, "msec": 1.0, "usec": 1e-3}.get(unit)
    if scale is not None and dt > 0:
        return dt * scale, f"header pixdim[4] ({unit})"
    if 0 < dt < 1:
        return dt * 1000.0, "header pixdim[4] (no unit; assumed seconds)"
    if 5 <= dt <= 200:
        return dt, "header pixdim[4] (no unit; assumed ms)"
    return float("nan"), "unknown (no timing in the header)"


def frame_times(n: int, interval_ms: float) -> np.ndarray:
    """Frame times in ms from the trigger for an evenly sampled cine (NaN when the interval is unknown)."""
    return np.arange(n, dtype=np.float32) * np.float32(interval_ms)


# ---------------------------------------------------------------- views

_VIEW_PATTERNS = {
    "2CH": r"(?<![0-9])2\s*[-_ ]?\s*ch|two[\s_-]*chamber|(?<![a-z])vla(?![a-z])|vertical[\s_-]*long",
    "3CH": r"(?<![0-9])3\s*[-_ ]?\s*ch|three[\s_-]*chamber",
    "4CH": r"(?<![0-9])4\s*[-_ ]?\s*ch|four[\s_-]*chamber|(?<![a-z])hla(?![a-z])|horizontal[\s_-]*long",
    "SAX": r"sax|short[\s_-]*axis|(?<![a-z])sa(?![a-z])",
}


def guess_view(*texts: str | None) -> str | None:
    """The view named by a series description / file or folder name, or None when absent or ambiguous."""
    for t in texts:
        if not t:
            continue
        s = str(t).lower()
        hits = [v for v, pat in _VIEW_PATTERNS.items() if re.search(pat, s)]
        if len(hits) == 1:
            return hits[0]
    return None


# ---------------------------------------------------------------- labels and key frames


def canonical(mask: np.ndarray, source: str, path: str | Path) -> np.ndarray:
    """Source labels -> canonical labels; unknown values raise UnknownLabelError naming the mask file."""
    try:
        return to_canonical(mask, source, where=str(path))
    except LabelError as e:
        raise labels_error(path, e) from e


def check_shape(mask: np.ndarray, image_shape: tuple, path: str | Path, image: str | Path) -> None:
    """A mask must match its image voxel for voxel."""
    if tuple(mask.shape) != tuple(image_shape):
        raise ShapeMismatchError(path, f"mask shape {tuple(mask.shape)} != image shape {tuple(image_shape)} of "
                                       f"{Path(image).name}")


def keyframe_labels(n_frames: int, frame_shape: tuple, frames: dict[int, np.ndarray]):
    """Full (T, ...) labels with only the given frames filled, and the matching `labelled` mask."""
    labels = np.zeros((n_frames, *frame_shape), dtype=np.uint8)
    labelled = np.zeros(n_frames, dtype=bool)
    for t, m in frames.items():
        labels[t], labelled[t] = m, True
    return labels, labelled


def match_frame(cine: np.ndarray, volume: np.ndarray) -> tuple[int, float]:
    """Index of the cine frame most similar to a volume (least mean absolute difference after z-scoring), and that
    difference (0 for an exact copy)."""
    def z(a):
        a = np.asarray(a, dtype=np.float64)
        return (a - a.mean()) / (a.std() + 1e-9)

    v = z(volume)
    d = np.array([np.abs(z(cine[t]) - v).mean() for t in range(cine.shape[0])])
    return int(d.argmin()), float(d.min())


def gt_truths(labels: np.ndarray, spacing: tuple, ed: int, es: int) -> dict:
    """Ground-truth LV/RV EDV, ESV, SV, EF (mL, %) and LV mass (g) from canonical SAX masks by slice summation."""
    from ..measure import sax_measures  # lazy: scipy.signal is slow to import and only labelled SAX needs it

    m = sax_measures(labels[[ed, es]], spacing, ed=0, es=1)
    return {k: (round(float(v), 3) if np.isfinite(v) else None) for k, v in m.items() if k not in ("ED", "ES")}


def body_meta(height_cm, weight_kg) -> dict:
    """Height, weight and Mosteller BSA when both are known."""
    from ..measure import bsa_mosteller

    out = {"height_cm": float(height_cm), "weight_kg": float(weight_kg)}
    if height_cm and weight_kg and height_cm > 0 and weight_kg > 0:
        out["bsa_m2"] = round(float(bsa_mosteller(height_cm, weight_kg)), 4)
    return out


def snake(name: str) -> str:
    """'VendorName' / 'External code' -> 'vendor_name' / 'external_code' for metadata keys."""
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", str(name).strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()


def require(cond: bool, path, problem: str, err: type[IngestError] = IngestError) -> None:
    """Raise `err(path, problem)` unless cond."""
    if not cond:
        raise err(path, problem)


def keyframe_cine(subject: str, view: str, pixels: np.ndarray, spacing: tuple, times: np.ndarray, ed: int | None,
                  es: int | None, masks: dict[int, np.ndarray], source: str, meta: dict) -> Cine:
    """A cine whose labels exist at some frames only (ED/ES); SAX cines get GT volumes, EF and mass in meta."""
    labels = labelled = None
    if masks:
        labels, labelled = keyframe_labels(pixels.shape[0], pixels.shape[1:], masks)
        if view == "SAX" and ed in masks and es in masks:
            meta = {**meta, **gt_truths(labels, spacing, ed, es), "truth_from": "ground-truth masks (slice summation)"}
    return Cine(subject=subject, view=view, pixels=pixels, spacing=spacing, frame_times=times, labels=labels,
                labelled=labelled, ed=ed, es=es, source=source, meta=meta)


def note(err: Exception, file: str | None = None) -> dict:
    """A report entry for a skipped or bad item: the file, the error type and the message."""
    return dict(file=str(file or getattr(err, "path", "")), error=type(err).__name__,
                message=getattr(err, "problem", None) or str(err))


def walk(root: str | Path, pattern: str = "*") -> list[Path]:
    """Files under root matching a glob pattern, following symlinked folders (sorted)."""
    root = Path(root)
    if root.is_file():
        return [root] if fnmatch.fnmatch(root.name, pattern) else []
    out = []
    for d, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        out += [Path(d) / f for f in files if fnmatch.fnmatch(f, pattern) and not f.startswith(".")]
    return sorted(out)
