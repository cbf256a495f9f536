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
from ..record import Cine, RecordError
from .errors import (CorruptFileError, IngestError, InvalidSpacingError, MetadataError, MissingFileError,
                     ShapeMismatchError, labels_error)

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class Item:
    """One subject to ingest: what to read and how reports may name it.

    key: the source's own subject id (may be private, e.g. a UK Biobank EID: it is scrubbed from every report).
    subject: the pseudonymous subject id cines are stored under (set by the driver when pseudonyms apply).
    label: how reports name the item; '{subject}' is filled in once the subject is known.
    origin: the file or folder the subject id was taken from (named when the id is refused); default paths[0].
    suffix: appended to a pseudonym for a repeat visit (UK Biobank '-i3'); the participant is the id without it.
    """

    key: str
    paths: tuple[Path, ...]
    subject: str | None = None
    label: str = "{subject}"
    private: bool = False
    suffix: str = ""
    opts: dict = field(default_factory=dict)
    origin: Path | None = None

    @property
    def name(self) -> str:
        return self.label.replace("{subject}", str(self.subject))

    @property
    def source_of_id(self) -> Path:
        return Path(self.origin or self.paths[0])

    @property
    def participant(self) -> str:
        """The person behind the subject id: visits of one participant share it (splits are by participant)."""
        s = str(self.subject)
        return s[: -len(self.suffix)] if self.suffix and s.endswith(self.suffix) else s


# ---------------------------------------------------------------- NIfTI


def nifti_stem(path: str | Path) -> str:
    """File name without .nii / .nii.gz."""
    name = Path(path).name
    for s in NIFTI_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return Path(name).stem


MAX_VOXEL_BYTES = 2 * 1024**3  # declared voxel data above this is no cine (a 50-frame UK Biobank SAX stack is ~70 MB)
DEFLATE_MAX_RATIO = 1032  # gzip (deflate) cannot inflate data by more than this factor


def raw_header(path: Path) -> nib.Nifti1Header:
    """The header exactly as stored: nibabel's loader quietly turns zero spacing into 1 mm and negative into its
    absolute value, which would scale every volume; readers must see (and reject) what the file says."""
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as f:
            head = f.read(4)
            f.seek(0)
            size = int.from_bytes(head, "little") if len(head) == 4 else 0
            klass = nib.Nifti2Header if 540 in (size, int.from_bytes(head, "big")) else nib.Nifti1Header
            return klass.from_fileobj(f, check=False)
    except (EOFError, OSError, zlib.error, ValueError, nib.spatialimages.HeaderDataError,
            nib.wrapstruct.WrapStructError) as e:  # a zero-byte or truncated file gives the last
        raise CorruptFileError(path, f"cannot read the NIfTI header ({type(e).__name__}: {e})") from e


def check_declared_size(hdr, path: Path) -> None:
    """Refuse a header that declares more voxel data than the file can hold or a cine can need, before allocating."""
    shape = hdr.get_data_shape()
    require(len(shape) > 0 and min(shape) >= 1, path, f"header declares an empty image of shape {shape}",
            CorruptFileError)
    nbytes = int(np.prod(shape, dtype=np.int64)) * hdr.get_data_dtype().itemsize
    require(nbytes <= MAX_VOXEL_BYTES, path, f"header declares {shape} {hdr.get_data_dtype()} "
            f"({nbytes / 1024**3:.1f} GiB), more than a cine can hold ({MAX_VOXEL_BYTES / 1024**3:.0f} GiB)",
            CorruptFileError)
    size = path.stat().st_size
    if path.name.endswith(".gz"):
        require(nbytes <= size * DEFLATE_MAX_RATIO, path, f"header declares {nbytes} bytes of voxel data, which a "
                f"{size}-byte gzip file cannot hold", CorruptFileError)
    else:
        need = int(hdr.get_data_offset()) + nbytes
        require(need <= size, path, f"truncated: header declares {need} bytes, the file holds {size}",
                CorruptFileError)


def check_spacing(hdr, path: Path, dims: int) -> None:
    """The first `dims` voxel sizes (mm) must be finite and positive."""
    z = [float(v) for v in hdr["pixdim"][1:1 + dims]]
    require(all(np.isfinite(v) and v > 0 for v in z), path, f"voxel size {z} mm: every spacing must be positive",
            InvalidSpacingError)


def check_finite(arr: np.ndarray, path: str | Path) -> np.ndarray:
    """Reject NaN / Inf pixels with their count: they would pass silently into every mean, volume and loss."""
    if arr.dtype.kind in "fc":
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        require(bad == 0, path, f"{bad} of {arr.size} values are NaN or infinite", CorruptFileError)
    return arr


def load_nifti(path: str | Path, dims: int | None = None) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Array (as stored, i j k [t]) and image of a NIfTI file, checked before and after reading.

    Before: the declared size against the file and a sane cine size, the first `dims` voxel sizes (default: 3 for
    4D files, else 2) positive. After: no NaN / Inf values. The image's header keeps the stored spacing.
    Errors are `CorruptFileError` / `InvalidSpacingError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "file not found" if not path.exists() else "not a file")
    hdr = raw_header(path)
    check_declared_size(hdr, path)
    ndim = len(hdr.get_data_shape())
    check_spacing(hdr, path, dims if dims is not None else (3 if ndim >= 4 else min(ndim, 2)))
    try:
        img = nib.load(str(path))
        arr = np.asarray(img.dataobj)
    except (EOFError, OSError, zlib.error, ValueError, nib.filebasedimages.ImageFileError,
            nib.wrapstruct.WrapStructError) as e:
        raise CorruptFileError(path, f"cannot read NIfTI ({type(e).__name__}: {e})") from e
    img.header["pixdim"] = hdr["pixdim"]  # undo the loader's silent repair: spacing as stored, checked above
    return check_finite(arr, path), img


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
    "3CH": r"lvot|(?<![0-9])3\s*[-_ ]?\s*ch|three[\s_-]*chamber",
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


BODY = {"height_cm": (40.0, 250.0), "weight_kg": (2.0, 400.0)}  # a person's height and weight (a reader refuses others)


def human_body(height_cm: float, weight_kg: float) -> bool:
    """Whether a height (cm) and weight (kg) are a person's (NaN is not)."""
    return all(lo <= v <= hi for v, (lo, hi) in zip((height_cm, weight_kg), BODY.values()))


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


def make_cine(path: str | Path, **fields) -> Cine:
    """A `Cine` from a reader, its `RecordError` (bad index, spacing, shape) re-raised as a MetadataError naming
    the file the record was read from."""
    try:
        return Cine(**fields)
    except RecordError as e:
        raise MetadataError(path, str(e)) from e


def keyframe_cine(path: str | Path, subject: str, view: str, pixels: np.ndarray, spacing: tuple, times: np.ndarray,
                  ed: int | None, es: int | None, masks: dict[int, np.ndarray], source: str, meta: dict) -> Cine:
    """A cine whose labels exist at some frames only (ED/ES); SAX cines get GT volumes, EF and mass in meta."""
    labels = labelled = None
    if masks:
        labels, labelled = keyframe_labels(pixels.shape[0], pixels.shape[1:], masks)
        if view == "SAX" and ed in masks and es in masks:
            meta = {**meta, **gt_truths(labels, spacing, ed, es), "truth_from": "ground-truth masks (slice summation)"}
    return make_cine(path, subject=subject, view=view, pixels=pixels, spacing=spacing, frame_times=times,
                     labels=labels, labelled=labelled, ed=ed, es=es, source=source, meta=meta)


def note(err: Exception, file: str | None = None) -> dict:
    """A report entry for a skipped or bad item: the file, the error type and the message."""
    return dict(file=str(file or getattr(err, "path", "")), error=type(err).__name__,
                message=getattr(err, "problem", None) or str(err))


def walk(root: str | Path, pattern: str = "*") -> list[Path]:
    """Files under root matching a glob pattern, following symlinked folders but visiting each real folder and file
    once (a link loop or a second link to the same patient is not read twice), sorted; hidden names skipped."""
    root = Path(root)
    if why := loop_reason(root):
        raise IngestError(root.name, why)
    if root.is_file():
        return [root] if fnmatch.fnmatch(root.name, pattern) else []
    out, seen_dirs, seen_files = [], set(), set()
    for d, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add(real)
        # real folders before links to them, so a patient is read under its own name, not an alias's
        dirs[:] = sorted((x for x in dirs if not x.startswith(".")), key=lambda x: (os.path.islink(Path(d) / x), x))
        for f in sorted(files):
            p = Path(d) / f
            if fnmatch.fnmatch(f, pattern) and not f.startswith(".") and (rf := os.path.realpath(p)) not in seen_files:
                seen_files.add(rf)
                out.append(p)
    return sorted(out)


def loop_reason(p: Path) -> str | None:
    """Why a link cannot be a subject's folder (it loops, or leads back to the folder holding it or above), None
    for anything else."""
    if not p.is_symlink():
        return None
    try:
        real = p.resolve(strict=True)
    except (OSError, RuntimeError):
        return "a link that loops or leads nowhere: not read"
    holder = p.parent.resolve()
    return "a link back to the folder that holds it, or above: not read" if holder.is_relative_to(real) else None


def real_subfolders(root: str | Path) -> list[Path]:
    """Visible sub-folders of root, each real folder once; a link that loops or leads back to root or above is kept
    as a subject that fails with its reason (`loop_reason`), never left out unseen."""
    root = Path(root)
    top, out, seen = root.resolve(), [], set()
    for p in sorted(root.iterdir(), key=lambda p: (p.is_symlink(), p.name)):
        if p.name.startswith("."):
            continue
        if loop_reason(p):
            out.append(p)
            continue
        if not p.is_dir():
            continue
        real = p.resolve()
        if real in seen or top.is_relative_to(real):
            continue
        seen.add(real)
        out.append(p)
    return sorted(out)
