"""Any DICOM folder, one cine series or a scanner's whole unsorted exam: the cines in it, SAX slices stacked.

Headers are read once and every series sorted (`cmrlib.io.exam`: a role and the rule that gave it); pixels are
decoded for the chosen series only. Within a series, files at one position are one slice; its frames are ordered
by TriggerTime (then InstanceNumber). SAX slices of all chosen series are stacked base -> apex (sorted along the
slice normal pointed toward the patient's left-anterior-inferior, where the apex lies), spacing = the slice gap.
Only a whitelist of acquisition tags reaches `meta`: never PatientName, PatientID, BirthDate, dates, places or
the series description (only the view it names).
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
from .common import Item, check_finite, guess_view, make_cine, real_subfolders, require, walk
from .errors import (CorruptFileError, IngestError, InconsistentSpacingError, InvalidSpacingError, MissingFramesError,
                     MixedFrameSizeError, NoPixelDataError, NonCineError, UnknownViewError)
from .exam import (APEX_LPS, NON_IMAGE_SOPS, VIEWS, Header, Image, Quiet, Series, fallbacks, group_series, is_cine,
                   once_each, one_person, parse_overrides, read_headers, series_notes, sort_series, view_hint)

NAME = "dicom"
# acquisition tags copied into meta (whitelist: nothing that identifies a person, a date or a place)
SAFE_TAGS = {"Manufacturer": "manufacturer", "ManufacturerModelName": "model", "MagneticFieldStrength": "field_t",
             "SliceThickness": "slice_thickness_mm", "RepetitionTime": "tr_ms", "EchoTime": "te_ms",
             "FlipAngle": "flip_deg", "NominalInterval": "rr_interval_ms",
             "CardiacNumberOfImages": "cardiac_number_of_images"}


@dataclass
class Frame(Header):
    """One decoded DICOM image and how to name it in errors (never a patient identifier)."""

    name: str
    ds: Dataset
    pixels: np.ndarray
    folder: str = ""
    desc: str = ""


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


MAX_FRAME_BYTES = 64 * 2**20  # one 2D frame of a cine is well under 1 MB; a larger file is read no further
MAX_SIDE = 4096  # pixels: a frame declared larger is not decoded


def by_structure(files: list[Path]):
    """How notes and errors name a file of a folder: by its place ('file 12 of 480'), never by its name, which a
    scanner's export often builds from the patient's name or id."""
    place = {p: f"file {i} of {len(files)}" for i, p in enumerate(files, 1)}
    return lambda p: place.get(p, "a file")


def _why(e: Exception, src, name: str) -> str:
    """A reader's exception as one line, the file's path and name in it replaced by how the file is named."""
    text = f"{type(e).__name__}: {e}"
    if not isinstance(src, bytes):
        for part in sorted({str(src), Path(src).name}, key=len, reverse=True):
            text = text.replace(part, name)
    return text


def read_frame(src: str | Path | bytes, name: str | None = None, folder: str = "", desc: str | None = None
               ) -> Frame | None:
    """Read and decode one DICOM image (None for non-image objects such as a DICOMDIR); typed errors otherwise."""
    name = str(name or src)
    size = len(src) if isinstance(src, bytes) else Path(src).stat().st_size
    require(size <= MAX_FRAME_BYTES, name, f"a file of {size / 2**20:.0f} MB: larger than any single cine frame "
            f"({MAX_FRAME_BYTES // 2**20} MB), not read", NonCineError)
    try:
        ds = pydicom.dcmread(io.BytesIO(src) if isinstance(src, bytes) else str(src), force=True)
    except Exception as e:  # pydicom raises many types on garbage
        raise CorruptFileError(name, f"unreadable DICOM ({_why(e, src, name)})") from e
    sop = str(ds.get("SOPClassUID", ""))
    if sop in NON_IMAGE_SOPS or (not isinstance(src, bytes) and Path(src).name.upper() == "DICOMDIR"):
        return None
    has_px = any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))
    if not has_px:
        if "Rows" not in ds or "Columns" not in ds:
            raise CorruptFileError(name, "truncated or not an image: the header ends before Rows/Columns/PixelData")
        raise NoPixelDataError(name, "DICOM has no pixel data (stripped, or the file is truncated before it)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    require(0 < rows <= MAX_SIDE and 0 < cols <= MAX_SIDE, name, f"declared {rows} x {cols} pixels: no cine frame's "
            f"size (each side 1-{MAX_SIDE}), not decoded", CorruptFileError)
    try:
        px = ds.pixel_array
    except Exception as e:
        raise CorruptFileError(name, f"pixel data truncated or undecodable ({_why(e, src, name)})") from e
    if px.ndim != 2:
        raise NonCineError(name, f"multi-frame / colour DICOM (pixel array {px.shape}) is not supported")
    px = px.astype(np.float32) * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
    d = desc if desc is not None else " ".join(str(ds.get(k, "") or "") for k in ("SeriesDescription", "ProtocolName"))
    f = Frame(name=name, ds=ds, pixels=check_finite(px, name), folder=folder, desc=d.strip())
    sp = f.pixel_spacing
    require(sp is None or all(np.isfinite(v) and v > 0 for v in sp), name,
            f"PixelSpacing {list(sp or ())} mm: every spacing must be positive", InvalidSpacingError)
    return f


def decode(im: Image) -> Frame:
    """An image's pixels: decoded now from its file, or the frame it came with (a zip member)."""
    if im.frame is not None:
        return im.frame
    f = read_frame(im.path, im.name, folder=im.folder)
    if f is None:
        raise NonCineError(im.name, "not an image")
    return f


# ---------------------------------------------------------------- slices


def split_slices(frames: list[Frame]) -> list[list[Frame]]:
    """Frames of one series -> one list per slice (same position and orientation)."""
    groups: dict[tuple, list[Frame]] = defaultdict(list)
    for f in frames:
        groups[(_round(f.ipp, 2), _round(f.iop, 3))].append(f)
    return list(groups.values())


def _round(v, nd):
    return None if v is None else tuple(np.round(np.asarray(v, dtype=float), nd).tolist())


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


def _meta(s: Slice, series: Series, mode: str) -> dict:
    """Whitelisted acquisition tags, geometry and how the series was chosen (never identifiers, never the
    description: only the view it gives)."""
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
    m.update(series_number=series.number, view_hint=view_hint(series.desc), view_from=series.reason,
             grouped_by=mode, image_orientation=None if f.iop is None else np.round(f.iop, 6).tolist(),
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


def _slices(series: Series, notes: list) -> list[Slice]:
    """The chosen images of a series decoded into time-ordered slices (typed errors on damage)."""
    return [make_slice(fs, notes) for fs in split_slices([decode(im) for im in series.chosen])]


def _cine(chosen: list[Series], subject: str, mode: str, source: str, notes: list) -> Cine:
    """The cine of one chosen view: a LAX series, or the SAX stack from its series."""
    first = chosen[0]
    if first.view == "SAX":
        slices = [sl for s in chosen for sl in _slices(s, notes)]
        return _sax_cine(slices, subject, _meta(slices[0], first, mode), source, notes)
    (sl,) = _slices(first, notes)
    return _lax_cine(sl, subject, first.view, _meta(sl, first, mode), source)


def cines_from_images(images: list[Image], subject: str, view: str | None = None, source: str = NAME,
                      notes: list | None = None, overrides: dict[int, str] | None = None,
                      header_errors: list[IngestError] = ()) -> list[Cine]:
    """An exam's images -> its cines (SAX stack first, then 2CH, 3CH, 4CH): every series sorted
    (`exam.sort_series`) and noted with its role and rule; a chosen series that cannot be read is a note and the
    others go on. No cine at all raises the most telling error, listing what each series was."""
    notes = [] if notes is None else notes
    images, repeats = once_each(images)
    if repeats:
        notes.append(dict(file="the folder", error="RepeatedFiles", message=f"{repeats} file(s) repeat another's "
                          "SOPInstanceUID (exported twice): each image read once"))
    series, mode = group_series(images)
    one_person(series, f"{subject} ({len(series)} series)")
    sort_series(series, view, overrides)
    out, errors = [], list(header_errors)
    for v in VIEWS:
        chosen = [s for s in series if s.view == v and is_cine(s)]
        if not chosen:
            continue
        tries = [chosen] + ([[s] for s in fallbacks(series, chosen[0])] if v != "SAX" else [])
        for i, attempt in enumerate(tries):
            try:
                out.append(_cine(attempt, subject, mode, source, notes))
            except IngestError as e:
                errors.append(e)
                for s in attempt:
                    s.role, s.reason = "failed", f"{type(e).__name__}: {e.problem}"
                continue
            if i:  # a displaced series read after the kept one gave no cine
                attempt[0].role = f"cine {v}"
                attempt[0].reason = f"read instead of {chosen[0].label}, which gave no cine"
            break
    notes.extend(series_notes(series, mode))
    if not out:
        raise _no_cine(series, errors)
    return out


def _no_cine(series: list[Series], errors: list[IngestError]) -> IngestError:
    """Why a folder gave no cine: the first damage found (its type and file), else an unknown view, else 'no cine
    series', each with what every series was."""
    what = "; ".join(f"{s.label}: {s.role}, {s.reason}" for s in series[:12]) + (" ..." if len(series) > 12 else "")
    if errors:
        e = errors[0]
        return type(e)(e.path, f"{e.problem} (no cine could be read: {what})")
    unknown = [s for s in series if s.reason.startswith("cannot tell the view")]
    if unknown:
        return UnknownViewError(unknown[0].first.name, f"cannot tell the view of {unknown[0].label}; pass view= or "
                                                        f"--view SERIES=VIEW ({what})")
    return NonCineError(series[0].first.name if series else "", f"no cine series: {what}")


def cines_from_frames(frames: list[Frame], subject: str, view: str | None = None, source: str = NAME,
                      notes: list | None = None) -> list[Cine]:
    """Decoded DICOM frames (a zip's members) -> cines, sorted like a folder's series."""
    notes = [] if notes is None else notes
    images = [Image(name=f.name, ds=f.ds, folder=f.folder, frame=f) for f in frames]
    with Quiet() as quiet:
        try:
            return cines_from_images(images, subject, view, source, notes)
        finally:
            notes.extend(quiet.note(subject))


def read_dicom_series(folder: str | Path, view: str | None = None, *, subject: str | None = None,
                      notes: list | None = None, views: dict[int, str] | None = None) -> list[Cine]:
    """Every cine in a DICOM folder, from one series to a whole unsorted exam: headers read once, each series
    given a role (`cmrlib.io.exam`), pixels read for the chosen series only; `notes` get one row per series
    (error 'Series', with its table row), one per file that could not be read and one that counts pydicom's
    warnings. `view`: every cine series is that view; `views`: {series number: view or 'skip'} over the rules.

    A series that cannot be read is a note on it; the others still make cines. A folder with no cine raises the
    typed error of the damage found (`CorruptFileError`, `MissingFramesError`, ...), else `UnknownViewError`, else
    `NonCineError`, each listing what every series was.
    """
    folder = Path(folder)
    notes = [] if notes is None else notes
    with Quiet() as quiet:  # pydicom warns when a value is first read, long after the file was opened
        try:
            files = dicom_files(folder)
            images, unreadable = read_headers(files, by_structure(files))
            require(bool(images) or bool(unreadable), folder, "no DICOM images found", NonCineError)
            errors = [n.pop("exception") for n in unreadable]
            notes.extend(unreadable)
            if not images:
                raise errors[0]
            return cines_from_images(images, subject or folder.name, view, NAME, notes, views, errors)
        finally:
            notes.extend(quiet.note("the folder"))


# ---------------------------------------------------------------- batch source


def find(root: str | Path, subject_level: int | None = None, views: dict | list | None = None, **_) -> list[Item]:
    """Subjects: root itself when it holds DICOM files directly or its sub-folders are named by view (`2ch/`,
    `4ch/`, `sax/`), or with subject_level=0; otherwise each sub-folder is a subject. `views`: {series number:
    view or 'skip'} (or `N=VIEW` strings) over the sorting rules, for every subject."""
    root = Path(root)
    dirs = real_subfolders(root)
    direct = any(p.is_file() and is_dicom_file(p) for p in root.iterdir())
    by_view = bool(dirs) and all(guess_view(d.name) for d in dirs)
    level = subject_level if subject_level is not None else (0 if direct or by_view else 1)
    opts = {"views": parse_overrides(views)} if views else {}
    if level == 0:
        return [Item(key=root.name, paths=(root,), subject=root.name, label=str(root), opts=opts)]
    return [Item(key=d.name, paths=(d,), subject=d.name, label=str(d), opts=opts) for d in dirs]


def read(item: Item, notes: list) -> list[Cine]:
    return read_dicom_series(item.paths[0], item.opts.get("view"), subject=item.subject, notes=notes,
                             views=item.opts.get("views"))
