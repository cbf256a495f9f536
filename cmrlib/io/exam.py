"""A scanner's exam folder sorted: every DICOM series gets a role by rules a user can read, from its headers alone.

A clinical CMR exam exported from PACS is one unsorted folder: surveys, cines of every view, phase-contrast flow,
late enhancement, T1 maps, 3D blocks. `sort_series` gives each series one role and the rule that gave it:

    cine SAX stack | cine 2CH | cine 3CH | cine 4CH | cine other | skipped | failed

Skipped, in this order (the first rule that holds is the one recorded): late enhancement/PSIR (its phase images
are no flow), phase-contrast flow (ImageType P/PHASE/VELOCITY, a flow description, or two image types sharing every
trigger time), T1/T2 mapping or Look-Locker (a mapping description, or the inversion time varying at one
position), survey/localizer (a description, or single images at several orientations), 3D acquisitions,
derived/secondary images, no trigger time, a single phase, fewer than `MIN_FRAMES` phases, two acquisitions in one
series. What remains is a cine; a description naming a right-heart view (RT 2CH, RV 2CH, RV inflow, RVOT) makes it
'cine other', never the LV's 2CH/3CH/4CH; else its view comes from the series description or protocol name (Siemens
`trufi`/`sax`/`4ch`, Philips `sa_sense`/`lvot`, GE `FIESTA SAX`, UK Biobank `CINE_segmented_LAX_4Ch`), else its
folder's name, else geometry: parallel slices at
three or more positions are the SAX stack; a single plane that holds the LV long axis (the SAX stack's normal, or
the line two long-axis planes share) is 2CH, 4CH or 3CH by its angle about that axis, measured from the patient's
anterior toward the lateral wall (2CH about 70 deg, 4CH about 140, 3CH about 178, as measured on real exams),
each view given to the nearest plane; any other plane is 'cine other'. A user's `--view N=VIEW` overrides all.
When two series compete for one view the later one (higher series number) is kept and the rule says so; the SAX
slices of every series that agrees with the largest stack's orientation are stacked together.

Headers are read once without pixels (`stop_before_pixels`); pixels are read later for the chosen series only.
pydicom's warnings about a vendor's nonconforming values are counted, never printed per file. Descriptions can
hold names, dates and other words no rule can vet: a description is shown only as what the sorter read in it
(`what_it_names`: a view, or the kind of series), never as its text.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from scipy.optimize import linear_sum_assignment

from .errors import CorruptFileError, IngestError

ROLES = ("cine SAX stack", "cine 2CH", "cine 3CH", "cine 4CH", "cine other", "skipped", "failed")
VIEWS = ("SAX", "2CH", "3CH", "4CH")
OVERRIDES = (*VIEWS, "other", "skip")  # what `--view N=...` may say
MIN_FRAMES = 3  # fewer phases at one position is no cine (the report flags cines under 10 frames)
APEX_LPS = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)  # patient left, anterior, inferior: where the apex points
ANTERIOR, LEFT = np.array([0.0, -1.0, 0.0]), np.array([1.0, 0.0, 0.0])  # DICOM LPS
# degrees about the long axis, from the patient's anterior toward the lateral wall, measured on real exams: the
# Siemens sample's 2CH 74 and 4CH 136, the two UK Biobank demo subjects' 2CH 78/56, 4CH 153/127, 3CH 188/167
LAX_ANGLE = {"2CH": 70.0, "4CH": 140.0, "3CH": 178.0}
LAX_TOLERANCE = 30.0  # a plane further than this from each view's angle is 'cine other'
HOLDS_AXIS = np.sin(np.deg2rad(25.0))  # |normal . long axis| below this: the plane holds the long axis
PARALLEL = 0.995  # |n1 . n2| above this: parallel planes (about 6 deg)
REPEAT = np.cos(np.deg2rad(10.0))  # an unnamed long-axis plane this close to a named one is that view again
HEADER_TAGS = ["SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "ProtocolName", "ImageType",
               "TriggerTime", "InstanceNumber", "ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing",
               "Rows", "Columns", "InversionTime", "MRAcquisitionType", "CardiacNumberOfImages", "SOPClassUID",
               "AcquisitionTime", "SliceThickness", "PatientName", "PatientID", "PatientBirthDate", "ScanningSequence",
               "SequenceName", "StudyInstanceUID", "FrameOfReferenceUID", "SOPInstanceUID"]  # identity: PERSON alone
NON_IMAGE_SOPS = ("1.2.840.10008.1.3.10",)  # Media Storage Directory (DICOMDIR)
PERSON = ("PatientID", "PatientName", "PatientBirthDate")  # files that differ here come from two people

# description patterns (lower case), by what they name; view patterns sit in `common._VIEW_PATTERNS`; an "inflow"
# or "outflow" is a view (RV inflow, LV outflow tract), never phase-contrast flow
_FLOW_SEQUENCE = r"_v\d+|v\d+in|(?<![a-z])pc"  # Siemens names a phase-contrast sequence by its velocity encoding
_FLOW = r"(?<!in)(?<!out)flow|(?<![a-z])pc(?![a-z])|venc|phase[\s_-]*contrast|velocity|(?<![a-z])vel(?![a-z])|_p$"
_MAPPING = (r"molli|shmolli|sasha|t1[\s_-]*map|t2[\s_-]*map|t2\*|t2star|look[\s_-]*locker|(?<![a-z])ll(?![a-z])|"
            r"ti[\s_-]*scout|t1[\s_-]*scout|mapping|(?<![a-z])map(?![a-z])")
_LGE = r"psir|(?<![a-z])lge(?![a-z])|late|delayed|(?<![a-z])mde(?![a-z])|(?<![a-z])de(?![a-z])|enhancement"
_SURVEY = (r"survey|locali[sz]er|(?<![a-z])loc(?![a-z])|scout|pilot|3[\s_-]*plane|tri[\s_-]*plane|"
           r"(?<![a-z])ref(?![a-z])|sense[\s_-]*ref|calibration|(?<![a-z])cal(?![a-z])")
_3D = r"(?<![a-z0-9])3d(?![a-z0-9])|mra|angio|whole[\s_-]*heart|navigator"
# another plane than the LV's (the right-heart views are `_RIGHT_HEART`'s)
_OTHER_VIEW = (r"coronal|(?<![a-z])cor(?![a-z])|aort|(?<![a-z])ao(?![a-z])|sagittal|(?<![a-z])sag(?![a-z])|"
               r"transverse|axial|(?<![a-z])tra(?![a-z])")
# right-heart views: never the LV's 2CH, 3CH or 4CH whatever else the description says
_RIGHT_HEART = (r"(?<![a-z])(rt|rv|right)[\s_-]*(ventric\w*[\s_-]*)?(2|two|3|three|4|four)[\s_-]*(ch|chamber)|"
                r"rv[\s_-]*(in|out)[\s_-]*flow|rvot|(?<![a-z])rv[\s_-]*(vla|long|lax)|right[\s_-]*(heart|ventric)|"
                r"tricuspid|(?<![a-z])tv(?![a-z])")
PHASE_TYPES = {"P", "PHASE", "VELOCITY", "VELOCITY MAP", "PHASE MAP", "PHASE CONTRAST P"}


class SortError(IngestError):
    """A folder the sorter refuses as a whole: files of two people, or an override naming no series."""


class Header:
    """What a DICOM image's header says, read the same way for a header alone and a decoded frame (`.ds`)."""

    ds: Dataset

    def get(self, tag: str, default=None):
        v = self.ds.get(tag, default)
        return default if v is None or v == "" else v

    @property
    def time(self) -> float | None:
        t = self.get("TriggerTime")
        try:
            return None if t is None else float(t)
        except (TypeError, ValueError):
            return None

    @property
    def iop(self) -> np.ndarray | None:
        return _vector(self.get("ImageOrientationPatient"), 6)

    @property
    def ipp(self) -> np.ndarray | None:
        return _vector(self.get("ImagePositionPatient"), 3)

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        v = _vector(self.get("PixelSpacing"), 2)
        return None if v is None else (float(v[0]), float(v[1]))


@dataclass
class Image(Header):
    """One DICOM file's header (pixels are read later, for the chosen series only) and how errors name it."""

    name: str
    ds: Dataset
    folder: str = ""
    path: Path | None = None  # None: the image came decoded (`frame`), as from a zip
    frame: object = None  # the decoded `dicom.Frame`, when it came so

    @property
    def normal(self) -> np.ndarray | None:
        """The plane's unit normal, its sign fixed (largest component positive) so that parallel planes agree."""
        iop = self.iop
        if iop is None:
            return None
        n = np.cross(iop[:3], iop[3:])
        norm = np.linalg.norm(n)
        if not np.isfinite(norm) or norm < 1e-6:
            return None
        n = n / norm
        return n if n[np.argmax(np.abs(n))] > 0 else -n

    @property
    def image_type(self) -> tuple[str, ...]:
        v = self.get("ImageType", ())
        v = [v] if isinstance(v, str) else list(v)
        return tuple(str(x).strip().upper() for x in v)

    @property
    def inversion_time(self) -> float | None:
        v = self.get("InversionTime")
        try:
            return None if v is None else round(float(v), 1)
        except (TypeError, ValueError):
            return None

    @property
    def desc(self) -> str:
        """SeriesDescription and ProtocolName (once when they are the same)."""
        parts = [str(self.get(k, "") or "").strip() for k in ("SeriesDescription", "ProtocolName")]
        return " ".join(dict.fromkeys(p for p in parts if p))


def _vector(v, n: int) -> np.ndarray | None:
    try:
        a = np.asarray(v, dtype=float) if v is not None else None
    except (TypeError, ValueError):
        return None
    return a if a is not None and a.shape == (n,) and np.isfinite(a).all() else None


@dataclass
class Series:
    """One series of an exam: its images and, once sorted, its role, view and the rule that gave them."""

    key: str
    images: list[Image]
    role: str = ""
    view: str | None = None
    reason: str = ""
    chosen: list[Image] = field(default_factory=list)  # the images read as a cine (a LAX series: one position)
    description: str = ""  # as shown: what the sorter read in the description (`what_it_names`), never its text

    @property
    def first(self) -> Image:
        return self.images[0]

    @property
    def number(self) -> int | None:
        v = self.first.get("SeriesNumber")
        try:
            return None if v is None else int(v)
        except (TypeError, ValueError):
            return None

    @property
    def label(self) -> str:
        """How the series is named in notes and errors: its number, else its first file's place (descriptions and
        file names can name people)."""
        return f"series {self.number}" if self.number is not None else f"the unnumbered series of {self.first.name}"

    @property
    def desc(self) -> str:
        return self.first.desc

    def positions(self) -> dict[tuple, list[Image]]:
        """Images by slice position and orientation."""
        out: dict[tuple, list[Image]] = defaultdict(list)
        for im in self.images:
            out[(_round(im.ipp, 1), _round(im.iop, 3))].append(im)
        return dict(out)

    @property
    def normals(self) -> list[np.ndarray]:
        """The distinct plane normals of its images."""
        seen: list[np.ndarray] = []
        for im in self.images:
            n = im.normal
            if n is not None and not any(abs(n @ s) > PARALLEL for s in seen):
                seen.append(n)
        return seen

    @property
    def frames(self) -> int:
        """Phases: the most distinct trigger times at one position (1 for untimed single images)."""
        return max(len({im.time for im in ims}) for ims in self.positions().values())

    @property
    def n_slices(self) -> int:
        return len(self.positions())

    def orientation(self) -> str:
        """The plane in words: transverse, coronal, sagittal (within 10 deg), oblique, or several."""
        ns = self.normals
        if not ns:
            return "unknown"
        if len(ns) > 1:
            return "several"
        n = np.abs(ns[0])
        names = ("sagittal", "coronal", "transverse")
        return names[int(np.argmax(n))] if n.max() > np.cos(np.deg2rad(10)) else "oblique"

    def row(self) -> dict:
        """The series as a table row: nothing in it names the patient."""
        return dict(series=self.number, description=self.description, files=len(self.images), frames=self.frames,
                    slices=self.n_slices, orientation=self.orientation(), role=self.role, reason=self.reason)


def _round(v, nd):
    return None if v is None else tuple(np.round(np.asarray(v, dtype=float), nd).tolist())


# ---------------------------------------------------------------- reading headers, quietly


class Quiet(logging.Handler):
    """Collect pydicom's warnings instead of printing them (a vendor's nonconforming UIDs warn once per file, as a
    warning and a log record): counted by kind, never with their values (a value can be a name)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.kinds: Counter = Counter()
        self.log = logging.getLogger("pydicom")

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.kinds[_warning_kind(record.getMessage())] += 1

    def __enter__(self):
        self._cm = warnings.catch_warnings(record=True)
        self._seen = self._cm.__enter__()
        warnings.simplefilter("always")
        self._propagate, self.log.propagate = self.log.propagate, False
        self.log.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.log.removeHandler(self)
        self.log.propagate = self._propagate
        self._cm.__exit__(*exc)
        warned = Counter(_warning_kind(str(w.message)) for w in self._seen)
        for kind, n in warned.items():  # pydicom warns and logs the same event: count it once
            self.kinds[kind] = max(self.kinds[kind], n)
        return False

    def note(self, where: str) -> list[dict]:
        """One note that counts the warnings, if any."""
        if not self.kinds:
            return []
        kinds = "; ".join(f"{k} ({n})" for k, n in self.kinds.most_common(3))
        return [dict(file=where, error="ReaderWarnings", message=f"pydicom warned {sum(self.kinds.values())} time(s) "
                                                                  f"about nonconforming values: {kinds}")]


def _warning_kind(text: str) -> str:
    """A warning's kind without its values: the text before the first quote, colon or digit, at most 60 chars."""
    return re.split(r"['\"`:0-9]", text, maxsplit=1)[0].strip()[:60] or "warning"


def read_header(path: Path, name: str, folder: str = "") -> Image | None:
    """One file's header without its pixels (None for a DICOMDIR or a file with no image); CorruptFileError when
    unreadable."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True, specific_tags=HEADER_TAGS)
    except Exception as e:  # pydicom raises many types on garbage
        raise CorruptFileError(name, f"unreadable DICOM ({type(e).__name__})") from e
    if str(ds.get("SOPClassUID", "")) in NON_IMAGE_SOPS or path.name.upper() == "DICOMDIR":
        return None
    if "Rows" not in ds or "Columns" not in ds:
        raise CorruptFileError(name, "truncated or not an image: the header ends before Rows/Columns")
    return Image(name=name, ds=ds, folder=folder, path=path)


def read_headers(files: list[Path], name=str) -> tuple[list[Image], list[dict]]:
    """Every file's header; an unreadable file is a note (and its error kept on the note), never the folder's end.
    `name(path)`: how errors name a file."""
    images, notes = [], []
    for p in files:
        try:
            im = read_header(p, name(p), p.parent.name)
        except IngestError as e:
            notes.append(dict(file=e.path, error=type(e).__name__, message=e.problem, exception=e))
            continue
        if im is not None:
            images.append(im)
    return images, notes


# ---------------------------------------------------------------- grouping and checks


def once_each(images: list[Image]) -> tuple[list[Image], int]:
    """The images with each SOPInstanceUID once at its place and time (an export that wrote some files twice), and
    how many were repeats."""
    seen: set[tuple] = set()
    out = []
    for im in images:
        uid = str(im.get("SOPInstanceUID", "") or "")
        key = (uid, str(im.get("SeriesInstanceUID", "")), _round(im.ipp, 1), im.time)  # one image, written twice
        if uid and key in seen:
            continue
        seen.add(key)
        out.append(im)
    return out, len(images) - len(out)


def _uid(s: Series, tag: str) -> str:
    return str(s.first.get(tag, "") or "").strip()


def other_study(s: Series, sax: Series) -> str | None:
    """Why a series is another person's or another exam's than the SAX stack's (its StudyInstanceUID or
    FrameOfReferenceUID differs where both say), None when it is not."""
    for tag, what in (("StudyInstanceUID", "another study"), ("FrameOfReferenceUID", "another frame of reference")):
        a, b = _uid(s, tag), _uid(sax, tag)
        if a and b and a != b:
            return (f"{what} than the SAX stack's ({tag} differs from {sax.label}'s): set aside as perhaps another "
                    "person's (--view SERIES=VIEW takes it)")
    return None


def group_series(images: list[Image]) -> tuple[list[Series], str]:
    """Series by SeriesInstanceUID; by orientation when every file has its own series UID (an anonymiser's)."""
    uids = [str(im.get("SeriesInstanceUID", "")) for im in images]
    if len(images) > 1 and len(set(uids)) == len(images):
        keys, mode = [repr(_round(im.iop, 3)) for im in images], "geometry (each file had its own series UID)"
    else:
        keys, mode = uids, "SeriesInstanceUID"
    groups: dict[str, list[Image]] = defaultdict(list)
    for k, im in zip(keys, images, strict=True):
        groups[k].append(im)
    series = [Series(k, ims) for k, ims in groups.items()]
    series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.first.name))
    return series, mode


def one_person(series: list[Series], where: str) -> None:
    """Refuse files of two people in one folder, naming the series (never the identifiers)."""
    people: dict[tuple, list[str]] = defaultdict(list)
    for s in series:
        for im in s.images:
            person = tuple(str(im.get(t, "") or "").strip().upper() for t in PERSON)
            if any(person):
                if s.label not in people[person]:
                    people[person].append(s.label)
    if len(people) > 1:
        who = "; ".join(f"{', '.join(ls[:3])}{' ...' if len(ls) > 3 else ''}" for ls in people.values())
        raise SortError(where, f"files of {len(people)} different patients in one folder ({who}): give one "
                               "patient's exam per folder")


def what_it_names(desc: str) -> str:
    """What the sorter reads in a description, shown in its place (a description may hold a name or a date that no
    rule can vet): the view it names, a right-heart view, or the kind of series its words give; '' for none."""
    if not desc:
        return ""
    low = desc.lower()
    for pattern, kind in ((_LGE, "late enhancement"), (_FLOW, "flow"), (_MAPPING, "mapping"), (_SURVEY, "survey"),
                          (_3D, "3D")):
        if re.search(pattern, low):
            return f"names {kind}"
    if right_heart(low):
        return "names a right-heart view"
    hint = view_hint(desc)
    return f"names {'another view' if hint == 'other' else hint}" if hint else "names no view"


def right_heart(text: str | None) -> bool:
    """Whether a description names a right-heart view (RT 2CH, RV 2CH, RV inflow, RVOT): never the LV's."""
    return bool(text) and re.search(_RIGHT_HEART, str(text).lower()) is not None


def view_hint(*texts: str | None) -> str | None:
    """The view a description or folder name gives: SAX, 2CH, 3CH, 4CH, 'other' (RVOT, aorta, ...) or None."""
    from .common import guess_view

    for t in texts:
        if not t:
            continue
        s = str(t).lower()
        if right_heart(s) or re.search(_OTHER_VIEW, s):
            return "other"
        if v := guess_view(s):  # the one view guesser (`common._VIEW_PATTERNS`)
            return v
    return None


# ---------------------------------------------------------------- the skip rules


def _described(s: Series, pattern: str) -> bool:
    return bool(s.desc) and re.search(pattern, s.desc.lower()) is not None


def _phase_contrast(s: Series) -> str | None:
    types = {t for im in s.images for t in im.image_type}
    if types & PHASE_TYPES:
        return "phase-contrast flow (ImageType marks phase or velocity images)"
    if _described(s, _FLOW):
        return "phase-contrast flow (its description)"
    if re.search(_FLOW_SEQUENCE, str(s.first.get("SequenceName", "")).lower()):
        return "phase-contrast flow (its sequence name gives a velocity encoding)"
    kinds = {im.image_type for im in s.images}
    if len(kinds) > 1 and _times_repeat(s):
        return "phase-contrast flow (two image types share every trigger time: magnitude and phase)"
    return None


def _mapping(s: Series) -> str | None:
    if _described(s, _MAPPING):
        return "T1/T2 mapping or Look-Locker (its description)"
    if any(len({im.inversion_time for im in ims} - {None}) >= 3 for ims in s.positions().values()):
        return "T1 mapping or Look-Locker (the inversion time varies at one position)"
    return None


def _late_enhancement(s: Series) -> str | None:
    if any("PSIR" in t for im in s.images for t in im.image_type):
        return "late enhancement / PSIR (ImageType)"
    if _described(s, _LGE):
        return "late enhancement / PSIR (its description)"
    return None


def _survey(s: Series) -> str | None:
    if _described(s, _SURVEY):
        return "survey / localizer (its description)"
    if len(s.normals) > 1 and s.frames == 1:
        return "survey / localizer (single images at several orientations)"
    return None


def _three_d(s: Series) -> str | None:
    if str(s.first.get("MRAcquisitionType", "")).upper() == "3D":
        return "3D acquisition (MRAcquisitionType 3D: MRA, 3D morphology)"
    if _described(s, _3D):
        return "3D acquisition (its description)"
    return None


def _derived(s: Series) -> str | None:
    t = s.first.image_type
    if (t and t[0] == "DERIVED") or (len(t) > 1 and t[1] == "SECONDARY"):
        return f"derived or secondary images (ImageType {'/'.join(t[:2])})"
    return None


def _untimed(s: Series) -> str | None:
    if all(im.time is None for im in s.images) and s.frames == 1:
        return "no TriggerTime: not a cine series" if len(s.images) > s.n_slices else \
            "single phase (a single frame at each position, no TriggerTime)"
    return None


def _few_frames(s: Series) -> str | None:
    n = s.frames
    if n == 1:
        return "single phase (a single frame at each position)"
    if n < MIN_FRAMES:
        return f"too few frames ({n}) for a cine"
    return None


def _times_repeat(s: Series) -> bool:
    """Whether two images at one position share a trigger time."""
    for ims in s.positions().values():
        timed = [im.time for im in ims if im.time is not None]
        if len(timed) > len(set(timed)):
            return True
    return False


def _repeated_times(s: Series) -> str | None:
    if _times_repeat(s):
        return "two acquisitions in one series (trigger times repeat at one position)"
    return None


SKIP_RULES = (_late_enhancement, _phase_contrast, _mapping, _survey, _three_d, _derived, _untimed, _few_frames,
              _repeated_times)  # late enhancement first: a PSIR series holds phase images too


def skip_reason(s: Series) -> str | None:
    """The first skip rule a series meets (None: it is a cine)."""
    for rule in SKIP_RULES:
        if why := rule(s):
            return why
    return None


# ---------------------------------------------------------------- views


def _skip(s: Series, why: str) -> None:
    s.role, s.view, s.reason, s.chosen = "skipped", None, why, []


def _choose(s: Series, view: str, why: str, images: list[Image] | None = None) -> None:
    s.view, s.reason = view, why
    s.role = "cine SAX stack" if view == "SAX" else f"cine {view}" if view in VIEWS else "cine other"
    s.chosen = images if images is not None else s.images


def _middle_slice(s: Series) -> tuple[list[Image], str]:
    """A long-axis series' images at one position: its only one, or the middle of several parallel ones."""
    pos = s.positions()
    if len(pos) == 1:
        return next(iter(pos.values())), ""
    keys = sorted(pos, key=lambda k: float(np.asarray(k[0] or (0, 0, 0)) @ (s.normals[0] if s.normals else
                                                                           np.zeros(3))))
    return pos[keys[len(keys) // 2]], f"; {len(pos)} slices: the middle one read"


def long_axis(sax: list[Series], lax: list[Series]) -> tuple[np.ndarray | None, str]:
    """The LV long axis (toward the apex): the SAX stack's normal, else the line two long-axis planes share."""
    if sax:
        n = sax[0].normals[0]
        return (n if n @ APEX_LPS >= 0 else -n), "the SAX stack's normal"
    planes = [s.normals[0] for s in lax if s.normals]
    for i in range(len(planes)):
        for j in range(i + 1, len(planes)):
            axis = np.cross(planes[i], planes[j])
            if np.linalg.norm(axis) > 0.3:
                axis /= np.linalg.norm(axis)
                return (axis if axis @ APEX_LPS >= 0 else -axis), "the line two long-axis planes share"
    return None, ""


def plane_angle(normal: np.ndarray, axis: np.ndarray) -> float:
    """Degrees (0-180) about the long axis of the line a plane holding that axis cuts in the short-axis plane,
    from the patient's anterior toward the lateral (left) wall."""
    a = ANTERIOR - (ANTERIOR @ axis) * axis
    a /= np.linalg.norm(a)
    lat = LEFT - (LEFT @ axis) * axis - (LEFT @ a) * a
    lat /= np.linalg.norm(lat)
    d = np.cross(normal, axis)
    return float(np.rad2deg(np.arctan2(d @ lat, d @ a)) % 180.0)


def _angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def assign_lax(planes: list[Series], axis: np.ndarray, free: list[str]) -> None:
    """Long-axis planes without a named view: 2CH, 4CH, 3CH by angle about the long axis, each view once (the
    nearest assignment), 'cine other' where no view is within `LAX_TOLERANCE`."""
    angles = [plane_angle(s.normals[0], axis) for s in planes]
    if not free:
        for s, ang in zip(planes, angles, strict=True):
            _choose(s, "other", f"geometry: a long-axis plane at {ang:.0f} deg, its view given already", s.chosen)
        return
    cost = np.array([[_angle_gap(ang, LAX_ANGLE[v]) for v in free] for ang in angles])
    rows, cols = linear_sum_assignment(cost)
    picked = {int(r): free[int(c)] for r, c in zip(rows, cols, strict=True) if cost[r, c] <= LAX_TOLERANCE}
    for i, (s, ang) in enumerate(zip(planes, angles, strict=True)):
        near = min(free, key=lambda v: _angle_gap(ang, LAX_ANGLE[v]))
        if i not in picked and near in picked.values() and _angle_gap(ang, LAX_ANGLE[near]) <= LAX_TOLERANCE:
            picked[i] = near  # beside another plane of that view: a repeat (the later series is read)
        if i in picked:
            v = picked[i]
            _choose(s, v, f"geometry: holds the long axis, at {ang:.0f} deg about it ({v} about "
                          f"{LAX_ANGLE[v]:.0f})", s.chosen)
        else:
            _choose(s, "other", f"geometry: holds the long axis at {ang:.0f} deg, near no free 2CH/3CH/4CH angle",
                    s.chosen)


def parse_overrides(pairs) -> dict[int, str]:
    """`--view N=VIEW` pairs (or a dict) -> {series number: SAX | 2CH | 3CH | 4CH | other | skip}."""
    out: dict[int, str] = {}
    items = pairs.items() if isinstance(pairs, dict) else (str(p).split("=", 1) for p in pairs or ())
    for kv in items:
        if len(kv) != 2:
            raise SortError("--view", "give SERIES=VIEW, e.g. 7=4CH")
        k, v = kv
        try:
            n = int(str(k).strip())
        except ValueError:
            raise SortError("--view", f"series {str(k)[:12]!r} is not a series number") from None
        v = str(v).strip()
        v = v.upper() if v.upper() in VIEWS else v.lower()
        if v not in OVERRIDES:
            raise SortError("--view", f"view {v[:12]!r} of series {n}: give one of {', '.join(OVERRIDES)}")
        out[n] = v
    return out


def sort_series(series: list[Series], view: str | None = None, overrides: dict[int, str] | None = None) -> None:
    """Give every series its role, view and rule (in place). `view`: every cine series is that view (one series
    folders); `overrides`: {series number: view or 'skip'} from the user, over every rule."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {s.number for s in series})
    if unknown:
        numbers = ", ".join(str(s.number) for s in series if s.number is not None) or "unnumbered"
        raise SortError("--view", f"no series {unknown[0]} in this folder (series: {numbers})")
    for s in series:
        s.description = what_it_names(s.desc)
    cines = []
    for s in series:
        forced = overrides.get(s.number) if s.number is not None else None
        if forced == "skip":
            _skip(s, "skipped by --view")
        elif forced is not None:
            _choose(s, forced, "--view")
            cines.append(s)
        elif why := skip_reason(s):
            _skip(s, why)
        else:
            cines.append(s)
    for s in cines:
        if s.role:  # forced
            continue
        if view:
            _choose(s, view.upper(), "the view given")
        elif right_heart(s.desc):
            _choose(s, "other", "its description names a right-heart view (never the LV 2CH, 3CH or 4CH)")
        elif v := view_hint(s.desc):
            _choose(s, v, "its description")
        elif v := view_hint(s.first.folder):
            _choose(s, v, "its folder's name")
        elif s.n_slices >= 3 and len(s.normals) == 1:
            _choose(s, "SAX", f"geometry: {s.n_slices} parallel slices")
    _stack(cines)
    _same_study(cines)
    _lax(cines)


def _same_study(cines: list[Series]) -> None:
    """Set aside every series (but those a user named) of another study or frame of reference than the SAX stack."""
    sax = [s for s in cines if s.view == "SAX" and is_cine(s)]
    if not sax:
        return
    main = max(sax, key=lambda s: (s.n_slices, s.number or 0))
    for s in cines:
        if s is not main and s.reason != "--view" and s.role != "skipped" and (why := other_study(s, main)):
            _skip(s, why)


def _stack(cines: list[Series]) -> None:
    """The SAX stack: the series named or found SAX, joined by unnamed single-slice series of its orientation
    (or, with none named, a set of such series at three or more positions); a stack at another angle is skipped."""
    sax = [s for s in cines if s.view == "SAX"]
    loose = [s for s in cines if not s.role and s.n_slices == 1 and s.normals]
    if not sax and loose:  # one series per slice, no descriptions: parallel planes at 3+ positions
        groups: list[list[Series]] = []
        for s in loose:
            g = next((g for g in groups if abs(g[0].normals[0] @ s.normals[0]) > PARALLEL), None)
            g.append(s) if g is not None else groups.append([s])
        best = max(groups, key=lambda g: len({_round(x.first.ipp, 1) for x in g}))
        if len({_round(x.first.ipp, 1) for x in best}) >= 3:
            for s in best:
                _choose(s, "SAX", f"geometry: one of {len(best)} parallel single-slice series")
            sax = best
    if not sax:
        return
    main = max(sax, key=lambda s: (s.n_slices, s.number or 0))
    n = main.normals[0]
    for s in sax:
        if not s.normals or abs(s.normals[0] @ n) < PARALLEL:
            _skip(s, f"a SAX stack at another angle ({main.label}, with more slices, is read)")
    for s in loose:
        if not s.role and abs(s.normals[0] @ n) > PARALLEL:
            _choose(s, "SAX", "geometry: a slice parallel to the SAX stack")
    joined = [s for s in cines if s.view == "SAX"]
    if len(joined) > 1:
        names = ", ".join(s.label for s in joined)
        for s in joined:
            s.reason += f"; stacked with {names}"


def _lax(cines: list[Series]) -> None:
    """Long-axis cines: their views from descriptions, else geometry; a view given twice keeps the later series."""
    sax = [s for s in cines if s.view == "SAX"]
    lax = [s for s in cines if s.view != "SAX" and s.role != "skipped"]
    for s in lax:
        images, more = _middle_slice(s)
        s.chosen = images
        if s.role:
            s.reason += more
    axis, from_what = long_axis(sax, [s for s in lax if not s.role or s.view in ("2CH", "3CH", "4CH")])
    unnamed = [s for s in lax if not s.role]
    if unnamed and axis is None:
        for s in unnamed:
            _skip(s, "cannot tell the view: no description, and no SAX stack or second long-axis plane to relate "
                     "it to (name it with --view SERIES=VIEW)")
    elif unnamed:
        holds = [s for s in unnamed if s.normals and abs(s.normals[0] @ axis) < HOLDS_AXIS]
        for s in unnamed:
            if s not in holds:
                _choose(s, "other", f"geometry: a plane that does not hold the LV long axis ({from_what})",
                        s.chosen)
        named = [s for s in lax if s.role and s.view in LAX_ANGLE and s.normals]
        for s in list(holds):
            twin = next((t for t in named if abs(t.normals[0] @ s.normals[0]) > REPEAT), None)
            if twin is not None:
                _choose(s, twin.view, f"geometry: the plane of {twin.label} ({twin.view}) again", s.chosen)
                holds.remove(s)
        assign_lax(holds, axis, [v for v in LAX_ANGLE if v not in {t.view for t in named}])
    for v in ("2CH", "3CH", "4CH"):
        same = [s for s in lax if s.view == v and s.role.startswith("cine")]
        if len(same) > 1:
            keep = max(same, key=lambda s: (s.reason == "--view", s.number if s.number is not None else -1,
                                            s.first.name))
            why = "named by --view" if keep.reason == "--view" else "acquired later"
            for s in same:
                if s is not keep:
                    chosen = s.chosen
                    _skip(s, f"a repeated {v}: {keep.label}, {why}, is read")
                    s.view, s.chosen = v, chosen  # read instead when the kept series gives no cine (`fallbacks`)


def fallbacks(series: list[Series], kept: Series) -> list[Series]:
    """The series a kept long-axis series displaced (latest first): read in turn when it gives no cine."""
    others = [s for s in series if s is not kept and s.role == "skipped" and s.view == kept.view
              and s.reason.startswith(f"a repeated {kept.view}")]
    return sorted(others, key=lambda s: s.number if s.number is not None else -1, reverse=True)


def is_cine(s: Series) -> bool:
    """Whether the sorter chose the series as a canonical cine (SAX stack, 2CH, 3CH or 4CH)."""
    return s.role in ROLES[:4]


def series_notes(series: list[Series], mode: str) -> list[dict]:
    """One note per series with its table row (`series`), the grouping rule on the first."""
    return [dict(file=s.first.name, error="Series", series=s.row(),
                 message=f"{s.label}{' (' + s.description + ')' if s.description else ''}: {s.role}, {s.reason}"
                         + (f" [grouped by {mode}]" if i == 0 else ""))
            for i, s in enumerate(series)]
