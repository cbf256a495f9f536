"""Any DICOM folder: find the cine series, order frames by trigger time, stack SAX slices along the slice normal.

Grouping: by SeriesInstanceUID; when every file carries its own series UID (some anonymisers randomise UIDs,
as in the MVnet sample) files are grouped by plane orientation instead. Within a
series, files at one position are one slice; its frames are ordered by TriggerTime (then InstanceNumber).
View: an explicit `view`, else the series description / protocol name, else the folder name, else a series of
>= 3 parallel slices is SAX. SAX slices of all series are stacked base -> apex (sorted along the slice normal
pointed toward the patient's left-anterior-inferior, where the apex lies), spacing = the slice gap.
Only a whitelist of acquisition tags reaches `meta`: never PatientName, PatientID, BirthDate, dates or places.
"""
from __future__ import annotations

import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..record import Cine
from .common import Item, check_finite, guess_view, make_cine, note, real_subfolders, require, walk
from .errors import (CorruptFileError, IngestError, InconsistentSpacingError, InvalidSpacingError, MissingFramesError,
                     MixedFrameSizeError, NoPixelDataError, NonCineError, UnknownViewError)

NAME = "dicom"
# acquisition tags copied into meta (whitelist: nothing that identifies a person, a date or a place)
SAFE_TAGS = {"Manufacturer": "manufacturer", "ManufacturerModelName": "model", "MagneticFieldStrength": "field_t",
             "SliceThickness": "slice_thickness_mm", "RepetitionTime": "tr_ms", "EchoTime": "te_ms",
             "FlipAngle": "flip_deg", "NominalInterval": "rr_interval_ms",
             "CardiacNumberOfImages": "cardiac_number_of_images"}
APEX_LPS = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)  # patient left, anterior, inferior: where the apex points
HARMLESS = (NonCineError, UnknownViewError)  # other acquisitions of a study: noted, not fatal
NON_IMAGE_SOPS = ("1.2.840.10008.1.3.10",)  # Media Storage Directory (DICOMDIR)


@dataclass
class Frame:
    """One decoded DICOM image and how to name it in errors (never a patient identifier)."""

    name: str
    ds: Dataset
    pixels: np.ndarray
    folder: str = ""
    desc: str = ""

    def get(self, tag: str, default=None):
        v = self.ds.get(tag, default)
        return default if v is None or v == "" else v

    @property
    def time(self) -> float | None:
        t = self.get("TriggerTime")
        return None if t is None else float(t)

    @property
    def iop(self) -> np.ndarray | None:
        v = self.get("ImageOrientationPatient")
        return None if v is None else np.asarray(v, dtype=float)

    @property
    def ipp(self) -> np.ndarray | None:
        v = self.get("ImagePositionPatient")
        return None if v is None else np.asarray(v, dtype=float)

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        v = self.get("PixelSpacing")
        return None if v is None else (float(v[0]), float(v[1]))


# ---------------------------------------------------------------- reading files


def is_dicom_file(path: Path) -> bool:
    """DICOM by its 'DICM' marker (or a .dcm/.ima name)."""
    if path.suffix.lower() in (".dcm", ".ima"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def dicom_files(folder: str | Path) -> list[Path]:
    """All DICOM files under a folder (recursive, sorted)."""
    folder = Path(folder)
    return [p for p in walk(folder) if is_dicom_file(p)]


def read_frame(src: str | Path | bytes, name: str | None = None, folder: str = "", desc: str | None = None
               ) -> Frame | None:
    """Read and decode one DICOM image (None for non-image objects such as a DICOMDIR); typed errors otherwise."""
    name = str(name or src)
    try:
        ds = pydicom.dcmread(io.BytesIO(src) if isinstance(src, bytes) else str(src), force=True)
    except Exception as e:  # pydicom raises many types on garbage
        raise CorruptFileError(name, f"unreadable DICOM ({type(e).__name__}: {e})") from e
    sop = str(ds.get("SOPClassUID", ""))
    if sop in NON_IMAGE_SOPS or Path(name).name.upper() == "DICOMDIR":
        return None
    has_px = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_px:
        if "Rows" not in ds or "Columns" not in ds:
            raise CorruptFileError(name, "truncated or not an image: the header ends before Rows/Columns/PixelData")
        raise NoPixelDataError(name, "DICOM has no pixel data (stripped, or the file is truncated before it)")
    try:
        px = ds.pixel_array
    except Exception as e:
        raise CorruptFileError(name, f"pixel data truncated or undecodable ({type(e).__name__}: {e})") from e
    if px.ndim != 2:
        raise NonCineError(name, f"multi-frame / colour DICOM (pixel array {px.shape}) is not supported")
    px = px.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    d = desc if desc is not None else " ".join(str(ds.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName"))
    f = Frame(name=name, ds=ds, pixels=check_finite(px, name), folder=folder, desc=d.strip())
    sp = f.pixel_spacing
    require(sp is None or all(np.isfinite(v) and v > 0 for v in sp), name,
            f"PixelSpacing {list(sp or ())} mm: every spacing must be positive", InvalidSpacingError)
    return f


def read_folder_frames(folder: str | Path) -> list[Frame]:
    """Decode every DICOM image under a folder."""
    folder = Path(folder)
    out = []
    for p in dicom_files(folder):
        f = read_frame(p, str(p), folder=p.parent.name)
        if f is not None:
            out.append(f)
    return out


# ---------------------------------------------------------------- grouping into slices and series


def _round(v, nd):
    return None if v is None else tuple(np.round(np.asarray(v, dtype=float), nd).tolist())


def _geometry(f: Frame) -> tuple:
    """Plane orientation: what files of one anonymised series share (size/spacing are checked, not grouped on)."""
    return _round(f.iop, 3)


def group_series(frames: list[Frame]) -> tuple[dict[str, list[Frame]], str]:
    """Series UID -> frames; by geometry when every file has its own series UID (randomised by an anonymiser)."""
    uids = [str(f.get("SeriesInstanceUID", "")) for f in frames]
    if len(frames) > 1 and len(set(uids)) == len(frames):
        keys, mode = [repr(_geometry(f)) for f in frames], "geometry (each file had its own series UID)"
    else:
        keys, mode = uids, "SeriesInstanceUID"
    groups: dict[str, list[Frame]] = defaultdict(list)
    for k, f in zip(keys, frames, strict=True):
        groups[k].append(f)
    return dict(groups), mode


def split_slices(frames: list[Frame]) -> list[list[Frame]]:
    """Frames of one series -> one list per slice (same position and orientation)."""
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        groups[(_round(f.ipp, 2), _round(f.iop, 3))].append(f)
    return list(groups.values())


@dataclass
class Slice:
    """One slice location of a cine: frames ordered in time."""

    frames: list[Frame]
    times: np.ndarray
    pixels: np.ndarray  # (T,H,W)

    @property
    def first(self) -> Frame:
        return self.frames[0]


def order_frames(frames: list[Frame], notes: list) -> tuple[list[Frame], np.ndarray]:
    """Frames of one slice in time order with their trigger times (ms).

    All timed: by TriggerTime, then InstanceNumber. Some untimed (a damaged or re-exported series): by
    InstanceNumber, when every frame has a distinct one and the timed frames agree with that order, the missing
    times interpolated, with a note; otherwise MissingFramesError names the first untimed file. None timed:
    NonCineError (not a cine series).
    """
    untimed = [f for f in frames if f.time is None]
    if not untimed:
        frames = sorted(frames, key=lambda f: (f.time, int(f.get("InstanceNumber", 0) or 0)))
        return frames, np.array([f.time for f in frames])
    require(len(untimed) < len(frames), untimed[0].name, "no TriggerTime: not a cine series", NonCineError)
    inst = [f.get("InstanceNumber") for f in frames]
    ok = None not in inst and len({int(i) for i in inst}) == len(frames)
    if ok:
        frames = sorted(frames, key=lambda f: int(f.get("InstanceNumber")))
        timed = np.array([i for i, f in enumerate(frames) if f.time is not None])
        t_known = np.array([frames[i].time for i in timed])
        ok = len(timed) >= 2 and bool(np.all(np.diff(t_known) > 0))
    require(ok, untimed[0].name, f"TriggerTime missing on {len(untimed)} of {len(frames)} frames and InstanceNumber "
                                 f"cannot order them", MissingFramesError)
    idx = np.arange(len(frames), dtype=float)
    t = np.interp(idx, timed, t_known)
    step = float(np.median(np.diff(t_known) / np.diff(timed)))  # beyond the timed frames: the series' own interval
    t = np.where(idx < timed[0], t_known[0] - (timed[0] - idx) * step, t)
    t = np.where(idx > timed[-1], t_known[-1] + (idx - timed[-1]) * step, t)
    notes.append(dict(file=untimed[0].name, error="MissingTriggerTime",
                      message=f"TriggerTime missing on {len(untimed)} of {len(frames)} frames: ordered by "
                              f"InstanceNumber, their times interpolated"))
    return frames, t


def make_slice(frames: list[Frame], notes: list | None = None) -> Slice:
    """Order a slice's frames in time and check it is a complete cine of equal-size frames."""
    f0 = frames[0]
    require(len(frames) >= 2, f0.name, "a single frame at this position: not a cine", NonCineError)
    frames, t = order_frames(frames, [] if notes is None else notes)
    shapes = [f.pixels.shape for f in frames]
    odd = [f for f in frames if f.pixels.shape != shapes[0]]
    require(not odd, odd[0].name if odd else f0.name,
            f"frame size {odd[0].pixels.shape if odd else ''} != {shapes[0]} of the other frames", MixedFrameSizeError)
    sp = {f.pixel_spacing for f in frames}
    require(len(sp) == 1, f0.name, f"pixel spacing differs across frames: {sorted(sp, key=str)}",
            InconsistentSpacingError)
    dup = np.flatnonzero(np.diff(t) == 0)
    require(dup.size == 0, frames[dup[0] + 1].name if dup.size else f0.name,
            f"two frames share trigger time {t[dup[0]] if dup.size else ''} ms (two acquisitions in one series?)")
    declared = int(f0.get("CardiacNumberOfImages", 0) or 0)
    require(declared <= len(frames), f0.name, f"{len(frames)} frames found, CardiacNumberOfImages says {declared}",
            MissingFramesError)
    d = np.diff(t)
    if d.size >= 2:
        med = float(np.median(d))
        gaps = np.flatnonzero(d > 1.5 * med)
        require(gaps.size == 0, f0.name, f"gap in trigger times after {t[gaps[0]] if gaps.size else 0:.1f} ms "
                                         f"({d.max():.1f} ms vs {med:.1f} ms between frames): missing frames",
                MissingFramesError)
    return Slice(frames=frames, times=t.astype(np.float32), pixels=np.stack([f.pixels for f in frames]))


# ---------------------------------------------------------------- views and records


def _view_of(s: Slice, n_parallel: int, view: str | None) -> tuple[str, str]:
    """(view, how it was decided) for a slice; UnknownViewError when nothing tells."""
    if view:
        return view.upper(), "parameter"
    f = s.first
    if v := guess_view(f.desc):
        return v, "series description"
    if v := guess_view(f.folder):
        return v, "folder name"
    if n_parallel >= 3:
        return "SAX", "geometry (>= 3 parallel slices)"
    raise UnknownViewError(f.name, f"cannot tell the view of series {f.desc or '(no description)'!r}; pass view=")


def _normal(f: Frame) -> np.ndarray:
    iop = f.iop
    if iop is None:
        return np.array([0.0, 0.0, 1.0])
    n = np.cross(iop[:3], iop[3:])
    return n / (np.linalg.norm(n) + 1e-12)


def body(f: Frame) -> dict:
    """Sex, height and weight from the header when it gives them (for normal ranges and BSA; never printed)."""
    from .common import body_meta, human_body

    out = {}
    sex = str(f.get("PatientSex", "")).strip().upper()
    if sex in ("M", "F"):
        out["sex"] = "male" if sex == "M" else "female"
    try:
        height_cm, weight_kg = 100 * float(f.get("PatientSize", 0)), float(f.get("PatientWeight", 0))
    except (TypeError, ValueError):
        return out
    if human_body(height_cm, weight_kg):
        out.update(body_meta(height_cm, weight_kg))
    return out


def _meta(s: Slice, how: str, mode: str) -> dict:
    """Whitelisted acquisition tags plus geometry (never identifiers)."""
    f = s.first
    m = {}
    for tag, key in SAFE_TAGS.items():
        v = f.get(tag)
        if v is not None:
            try:
                m[key] = v if isinstance(v, str) else int(v) if isinstance(v, int) else float(v)
            except (TypeError, ValueError):
                m[key] = str(v)
    if m.get("rr_interval_ms"):
        m["heart_rate_bpm"] = round(60000.0 / float(m["rr_interval_ms"]), 2)
    m.update(body(f))
    m.update(series_description=f.desc, view_from=how, grouped_by=mode,
             image_orientation=None if f.iop is None else np.round(f.iop, 6).tolist(),
             image_position=None if f.ipp is None else np.round(f.ipp, 3).tolist())
    return m


def _lax_cine(s: Slice, subject: str, view: str, meta: dict, source: str) -> Cine:
    sy, sx = s.first.pixel_spacing or (1.0, 1.0)
    if s.first.pixel_spacing is None:
        meta["spacing"] = "unknown (no PixelSpacing): 1 mm assumed"
    return make_cine(s.first.name, subject=subject, view=view, pixels=s.pixels, spacing=(sy, sx), frame_times=s.times,
                     source=source, meta=meta)


def stack_sax(slices: list[Slice], notes: list) -> tuple[list[Slice], float, list[float]]:
    """Order SAX slices base -> apex, drop repeated positions (keep the later series), check equal geometry."""
    f0 = slices[0].first
    n = _normal(f0)
    n = n if n @ APEX_LPS >= 0 else -n
    for s in slices[1:]:
        f = s.first
        require(abs(_normal(f) @ n) > 0.995, f.name, "slice orientation differs from the rest of the SAX stack",
                InconsistentSpacingError)
        require(f.pixels.shape == f0.pixels.shape, f.name, f"slice size {f.pixels.shape} != {f0.pixels.shape}",
                MixedFrameSizeError)
        require(f.pixel_spacing == f0.pixel_spacing, f.name,
                f"pixel spacing {f.pixel_spacing} != {f0.pixel_spacing} of the other slices", InconsistentSpacingError)
        require(len(s.frames) == len(slices[0].frames), f.name,
                f"{len(s.frames)} frames, other slices have {len(slices[0].frames)}", MissingFramesError)
    pos = [float(s.first.ipp @ n) if s.first.ipp is not None else float(i) for i, s in enumerate(slices)]
    series_no = [int(s.first.get("SeriesNumber", 0) or 0) for s in slices]
    order = sorted(range(len(slices)), key=lambda i: (round(pos[i], 1), series_no[i]))
    kept: list[int] = []
    for i in order:
        if kept and abs(pos[i] - pos[kept[-1]]) < 0.5:
            notes.append(dict(file=slices[kept[-1]].first.name, error="RepeatedSlice",
                              message=f"slice at {pos[i]:.1f} mm acquired twice; kept the later series"))
            kept[-1] = i
        else:
            kept.append(i)
    p = np.array([pos[i] for i in kept])
    gap = float(np.median(np.diff(p))) if len(p) > 1 else float(f0.get("SliceThickness", 0) or 0) or 1.0
    if len(p) > 2:
        bad = np.flatnonzero(np.abs(np.diff(p) - gap) > max(0.1 * gap, 0.5))
        require(bad.size == 0, slices[kept[bad[0] + 1]].first.name if bad.size else f0.name,
                f"uneven slice gaps {np.round(np.diff(p), 2).tolist()} mm (a slice missing?)",
                InconsistentSpacingError)
    return [slices[i] for i in kept], gap, p.tolist()


def _sax_cine(slices: list[Slice], subject: str, meta: dict, source: str, notes: list) -> Cine:
    slices, gap, pos = stack_sax(slices, notes)
    sy, sx = slices[0].first.pixel_spacing or (1.0, 1.0)
    times = np.stack([s.times for s in slices])
    meta.update(slice_positions_mm=np.round(pos, 2).tolist(),
                trigger_time_spread_ms=round(float(np.ptp(times, axis=0).max()), 2) if len(slices) > 1 else 0.0)
    return make_cine(slices[0].first.name, subject=subject, view="SAX",
                     pixels=np.stack([s.pixels for s in slices], axis=1), spacing=(gap, sy, sx),
                     frame_times=times.mean(axis=0), source=source, meta=meta)


def cines_from_frames(frames: list[Frame], subject: str, view: str | None = None, source: str = NAME,
                      notes: list | None = None, rejected: list | None = None) -> list[Cine]:
    """Decoded DICOM frames -> cines (one per long-axis series, one SAX stack); harmless rejections become notes
    (and their errors are appended to `rejected`)."""
    notes = [] if notes is None else notes
    rejected = [] if rejected is None else rejected
    series, mode = group_series(frames)
    sax: list[tuple[Slice, str]] = []
    out: list[Cine] = []
    for fs in series.values():
        groups = split_slices(fs)
        parallel = len({_round(_normal(g[0]), 2) for g in groups}) == 1
        n_parallel = len(groups) if parallel else 0
        for g in groups:
            try:
                s = make_slice(g, notes)
                v, how = _view_of(s, n_parallel, view)
            except HARMLESS as e:
                notes.append(note(e))
                rejected.append(e)
                continue
            if v == "SAX":
                sax.append((s, how))
            else:
                out.append(_lax_cine(s, subject, v, _meta(s, how, mode), source))
    if sax:
        out.insert(0, _sax_cine([s for s, _ in sax], subject, _meta(sax[0][0], sax[0][1], mode), source, notes))
    return out


def read_dicom_series(folder: str | Path, view: str | None = None, *, subject: str | None = None,
                      notes: list | None = None) -> list[Cine]:
    """Every cine in a DICOM folder (SAX slices stacked); non-cine series are skipped with a reason in `notes`.

    Damaged input (corrupt/truncated files, no pixel data, mixed frame sizes, missing frames, inconsistent
    spacing) raises its typed `IngestError`; a folder with no cine raises why its series were rejected
    (UnknownViewError first: a cine whose view is unknown is the fixable case).
    """
    folder = Path(folder)
    notes = [] if notes is None else notes
    frames = read_folder_frames(folder)
    require(bool(frames), folder, "no DICOM images found", NonCineError)
    rejected: list[IngestError] = []
    cines = cines_from_frames(frames, subject or folder.name, view, NAME, notes, rejected)
    if not cines:
        raise sorted(rejected, key=lambda e: not isinstance(e, UnknownViewError))[0]
    return cines


# ---------------------------------------------------------------- batch source


def find(root: str | Path, subject_level: int | None = None, **_) -> list[Item]:
    """Subjects: root itself when it holds DICOM files directly or its sub-folders are named by view (`2ch/`,
    `4ch/`, `sax/`), or with subject_level=0; otherwise each sub-folder is a subject."""
    root = Path(root)
    dirs = real_subfolders(root)
    direct = any(p.is_file() and is_dicom_file(p) for p in root.iterdir())
    by_view = bool(dirs) and all(guess_view(d.name) for d in dirs)
    level = subject_level if subject_level is not None else (0 if direct or by_view else 1)
    if level == 0:
        return [Item(key=root.name, paths=(root,), subject=root.name, label=str(root))]
    return [Item(key=d.name, paths=(d,), subject=d.name, label=str(d)) for d in dirs]


def read(item: Item, notes: list) -> list[Cine]:
    return read_dicom_series(item.paths[0], item.opts.get("view"), subject=item.subject, notes=notes)
