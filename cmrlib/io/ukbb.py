"""UK Biobank CMR: one zip per subject and field, `<eid>_<field>_<instance>_<array>.zip`, of DICOMs + a manifest.

Fields: 20208 long axis (CINE_segmented_LAX_2Ch / _3Ch / _4Ch), 20209 short axis (CINE_segmented_SAX_b1..bN,
one series per slice). The manifest (`manifest.csv`, in real downloads often `manifest.cvs`) maps each file to
its series description; dates written 'Mon D, 20YY' carry a comma and are repaired before parsing. Series
other than the segmented cines (flow, T1 maps, tagging, LVOT, ...) are skipped with a note.

The EID never reaches an output: subjects are pseudonyms from `Pseudonyms` (a CSV the user names and keeps),
errors name a zip as `<pseudonym>_<field>.zip`, and no DICOM identity tag is copied (see `dicom.SAFE_TAGS`).
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from pathlib import Path

from ..record import Cine
from .common import Item, walk
from .dicom import Frame, cines_from_frames, read_frame
from .errors import CorruptFileError, IngestError, MetadataError, NonCineError

NAME = "ukbb"
ZIP_RE = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)\.zip$")
FIELDS = {"20208": "long axis", "20209": "short axis"}
CINE_RE = re.compile(r"^CINE_segmented_(SAX_b\d+|SAX|LAX_2Ch|LAX_3Ch|LAX_4Ch)$", re.IGNORECASE)
MANIFESTS = ("manifest.csv", "manifest.cvs")
_DATE_COMMA = re.compile(r"([A-Z][a-z]{2}) (\d{1,2}), (\d{4})")


def parse_manifest(text: str, where: str) -> dict[str, str]:
    """Manifest text -> {file name: series description} (tolerates the comma in 'Mon D, YYYY' dates)."""
    rows = list(csv.reader(io.StringIO(_DATE_COMMA.sub(r"\1 \2 \3", text))))
    if not rows:
        raise MetadataError(where, "manifest is empty")
    head = [h.strip().lower() for h in rows[0]]
    fcol = next((i for i, h in enumerate(head) if h in ("filename", "file name", "file")), None)
    dcol = next((i for i, h in enumerate(head) if h.startswith("series") and "d" in h[6:]), None)
    if fcol is None or dcol is None:
        raise MetadataError(where, f"manifest lacks a filename or series description column (header {rows[0]})")
    return {r[fcol].strip(): r[dcol].strip() for r in rows[1:] if len(r) > max(fcol, dcol)}


def _manifest(zf: zipfile.ZipFile, where: str) -> dict[str, str] | None:
    for info in zf.infolist():
        if Path(info.filename).name.lower() in MANIFESTS:
            return parse_manifest(zf.read(info).decode("utf-8", "replace"), f"{where}:{Path(info.filename).name}")
    return None


def read_zip_frames(path: str | Path, where: str, notes: list) -> list[Frame]:
    """Decode the cine DICOMs of one UK Biobank zip; `where` names the zip in errors instead of its EID-bearing name."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CorruptFileError(where, f"not a readable zip ({type(e).__name__})") from e
    frames, skipped = [], {}
    with zf:
        manifest = _manifest(zf, where)
        if manifest is None:
            notes.append(dict(file=where, error="NoManifest", message="no manifest.csv/.cvs: series descriptions "
                                                                      "taken from the DICOM headers"))
        for info in zf.infolist():
            base = Path(info.filename).name
            if info.is_dir() or base.lower() in MANIFESTS or base.startswith("."):
                continue
            desc = manifest.get(base, manifest.get(info.filename)) if manifest else None
            if desc is not None and not CINE_RE.match(desc):
                skipped[desc] = skipped.get(desc, 0) + 1
                continue
            try:
                data = zf.read(info)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise CorruptFileError(f"{where}:{base}", f"zip member unreadable ({type(e).__name__})") from e
            if len(data) < 132 or (data[128:132] != b"DICM" and not base.lower().endswith(".dcm")):
                continue
            f = read_frame(data, f"{where}:{base}", desc=desc)
            if f is not None:
                frames.append(f)
    notes.extend(dict(file=where, error="SkippedSeries", message=f"{d!r} ({n} files): not a segmented cine")
                 for d, n in sorted(skipped.items()))
    return frames


def read_ukbb_subject(zips: list[str | Path], subject: str, notes: list | None = None) -> list[Cine]:
    """All cines (SAX stack, 2CH, 3CH, 4CH) in one subject's zips, stored under the pseudonym `subject`."""
    notes = [] if notes is None else notes
    frames = []
    for z in sorted(map(Path, zips)):
        m = ZIP_RE.match(z.name)
        field = m.group(2) if m else "zip"
        frames += read_zip_frames(z, f"{subject}_{field}.zip", notes)
    if not frames:
        raise NonCineError(f"{subject}_*.zip", "no segmented cine DICOMs in the zips")
    cines = cines_from_frames(frames, subject, None, NAME, notes)
    if not cines:
        raise NonCineError(f"{subject}_*.zip", "no cine series found: " +
                           "; ".join(n["message"] for n in notes[-3:]))
    for c in cines:
        c.meta["field"] = "20209" if c.view == "SAX" else "20208"
    return cines


def find(root: str | Path, **_) -> list[Item]:
    """Subjects from `<eid>_<20208|20209>_<instance>_<array>.zip` names; key = EID (private), one item per visit."""
    root = Path(root)
    groups: dict[tuple[str, str], list[Path]] = {}
    for z in walk(root, "*.zip"):
        m = ZIP_RE.match(z.name)
        if m and m.group(2) in FIELDS:
            groups.setdefault((m.group(1), m.group(3)), []).append(z)
    return [Item(key=eid, paths=tuple(zs), private=True, suffix="" if inst == "2" else f"-i{inst}",
                 label="{subject}_*.zip") for (eid, inst), zs in sorted(groups.items())]


def read(item: Item, notes: list) -> list[Cine]:
    try:
        return read_ukbb_subject(list(item.paths), item.subject, notes)
    except IngestError:
        raise
    except Exception as e:  # never let a message carry the zip's EID-bearing path
        raise IngestError(item.name, f"{type(e).__name__} while reading the zips") from None

