"""The cohort store: one chunked, compressed zarr group per cine plus a manifest table.

Layout of a cohort folder:

    cines/<cine_id>.zarr   pixels (T,[Z,]H,W), labels uint8, labelled, frame_times, landmarks/<set>
                           attrs: subject, view, spacing, ed, es, source, meta, pixel_scale
    splits.csv             subject -> train / valid / test: a pure function of the subjects (participants) and the
                           seed, whatever order they arrived in or how often a run was interrupted
    cohort.json            where the cines come from (source and its settings): another source is refused
    manifest/              one row per cine (ids, shape, spacing, ED/ES and the flattened meta) as parquet parts,
                           appended per batch of new cines; the split is joined from splits.csv when read
    report.json            bad items an ingest recorded (file, error type, message)

Everything the store writes (cines, lock, manifest parts, splits, report, markers, temporaries) must resolve inside
the cohort folder: a link planted inside that leads out is refused, never followed. Damage is repaired from what
is on disk: a cine missing an array is not intact (ingest writes it again), a manifest part that is missing or
unreadable makes the manifest rebuild from the cines, and splits are recomputed from the manifest.

Pixels are read back as float32. They are stored as uint16 counts of `pixel_scale` when that is
exact for a power-of-two quantum down to 1/1024 (integer scanner magnitudes; the phantom's multiples of
1/512), else as float32; frames
are compressed with Blosc zstd + bitshuffle (lossless; together about 30 % smaller than zstd float32).

Every cine is written to a hidden temporary folder and renamed into place, so a reader never
sees half a cine, and a re-run skips cines that are already there.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import time
import uuid
from functools import partial
from itertools import zip_longest
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec

from .record import Cine, is_safe_id
from .utils import OutsideFolderError, atomic_dir, atomic_write_json, atomic_write_text, inside, rng, to_jsonable

SPLITS = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)  # of SPLITS, per stratum
PIXEL_SCALES = tuple(2.0 ** -k for k in range(11))  # exact quanta tried coarsest first: scanner integers 1, phantom 1/512
FRAME_CODEC = BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle")  # -20 % vs zarr's default zstd on uint16 cines
CHUNK_BYTES = 1 << 20  # whole frames per chunk up to this size: zarr's cost is per chunk, a frame of a small cine is tiny


def stratified_split(strata: dict[str, str], seed: int = 0, fractions=SPLIT_FRACTIONS) -> dict[str, str]:
    """Subject -> train/valid/test, each stratum split in proportion, deterministic for the seed.

    Within a stratum the shuffled subjects sit at evenly spaced points shifted by a random offset, so each
    split gets its share to +-1 and small strata are unbiased on average; valid and test are never empty
    when there are >= 3 subjects (a train subject of the largest stratum moves over).
    """
    r = rng(seed)
    cuts = np.cumsum(fractions) / np.sum(fractions)
    by: dict[str, list[str]] = {}
    for s in sorted(map(str, strata)):
        by.setdefault(str(strata[s]), []).append(s)
    out: dict[str, str] = {}
    for key in sorted(by):
        members, offset = list(r.permutation(by[key])), r.random()
        for j, s in enumerate(members):
            q = ((j + 0.5) / len(members) + offset) % 1.0
            out[str(s)] = SPLITS[min(int(np.searchsorted(cuts, q, side="right")), len(SPLITS) - 1)]
    if len(out) >= 3:
        for need in ("valid", "test"):
            if need not in out.values():
                size = {s: len(by[str(strata[s])]) for s, v in out.items() if v == "train"}
                out[max(sorted(size), key=size.get)] = need
    return out


def grouped_folds(strata: dict[str, str], k: int = 5, seed: int = 0,
                  together: Sequence[Sequence[str]] = ()) -> dict[str, int]:
    """Subject -> fold 0..k-1, each stratum dealt round the folds in a seeded order, subjects listed `together` (one
    exam segmented twice) in one fold; a pure function of the subjects, their strata and the seed."""
    if k < 2:
        raise ValueError(f"grouped_folds: k must be at least 2, got {k}")
    unit = {str(s): str(s) for s in strata}
    for group in together:
        members = sorted(str(s) for s in group if str(s) in unit)
        for s in members:
            unit[s] = members[0]
    units: dict[str, list[str]] = {}  # stratum -> its units (named by their first subject)
    for s in sorted(unit):
        if unit[s] == s:
            units.setdefault(str(strata[s]), []).append(s)
    r, fold_of, nxt = rng(seed), {}, 0
    for key in sorted(units):
        for u in r.permutation(units[key]):
            fold_of[str(u)], nxt = nxt % k, nxt + 1
    return {s: fold_of[unit[s]] for s in sorted(unit)}


def fold_roles(fold: int, k: int = 5) -> dict[str, list[int]]:
    """Cross-validation's rotation (SSLHF's): fold `fold` is test, the next one validation, the other k-2 train."""
    if k < 3:  # two folds would leave no training fold: every fit would train on nothing
        raise ValueError(f"cross-validation needs at least 3 folds (test, validation, training), got {k}")
    return dict(test=[fold], valid=[(fold + 1) % k], train=[(fold + j) % k for j in range(2, k)])


MANIFEST_COLUMNS = ("cine_id", "subject", "view", "source", "split", "n_frames", "n_slices", "height", "width",
                    "spacing_mm", "ed", "es", "path")


MAX_PARTS = 64  # manifest parts merged into one beyond this
STAMP_SETTLE_NS = 2_000_000_000  # a cines-folder time younger than this is not trusted as the manifest's stamp


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns parquet can hold: a metadata column that mixes kinds (text and numbers) is stored as text."""
    import pyarrow as pa

    out = df.copy()
    for c in out.columns[out.dtypes == object]:
        try:
            pa.array(out[c], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            out[c] = out[c].map(lambda v: v if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
    return out


def _read_parquet(path: Path, columns: list[str] | None) -> pd.DataFrame:
    """One manifest part, only the asked columns that it has."""
    if columns is not None:
        import pyarrow.parquet as pq

        have = set(pq.read_schema(path).names)
        columns = [c for c in columns if c in have]
    return pd.read_parquet(path, columns=columns)


def _on_cine(cid: str, *args, root: str, fn: Callable, kwargs: dict):
    """One task of `CohortStore.map`: read the cine here, then apply `fn`."""
    return fn(*args, CohortStore(root).read(cid), **kwargs)


class StoreError(FileNotFoundError):
    """A cohort folder or a cine in it is missing or unreadable."""


class StoreBusyError(RuntimeError):
    """Another process is writing this cohort."""


class CohortMismatch(StoreError):
    """A cohort folder already holds cines from another source or recipe."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple, np.ndarray)):
            out[key] = json.dumps(np.asarray(v).tolist())
        else:
            out[key] = v
    return out


def _to_counts(frame: np.ndarray, scale: float, out: np.ndarray) -> bool:
    """Write frame / scale into the uint16 `out`; False unless every value is an exact count in range."""
    k = frame / np.float32(scale)
    if not (np.isfinite(k).all() and k.min() >= 0 and k.max() <= np.iinfo(np.uint16).max and (k == np.round(k)).all()):
        return False
    out[...] = k
    return True


def pack_pixels(pixels: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(uint16 counts, scale) when the pixels are exact multiples of a scale in uint16 range, else (float32, None).

    Checked frame by frame so a 50-frame SAX stack needs no full-size temporaries."""
    px = np.asarray(pixels, np.float32)
    out = np.empty(px.shape, np.uint16)
    for scale in PIXEL_SCALES:
        if all(_to_counts(f, scale, o) for f, o in zip(px, out)):
            return out, scale
    return px, None


def frame_chunks(a: np.ndarray) -> tuple[int, ...]:
    """Chunks of whole frames, as many as fit in `CHUNK_BYTES` (at least one): a frame still reads on its own from
    a big SAX stack, while a small cine is a chunk or two rather than one per frame."""
    frame = max(a[0].nbytes, 1) if len(a) else 1
    return (max(1, min(len(a), CHUNK_BYTES // frame)),) + a.shape[1:]


def unpack_pixels(stored: np.ndarray, scale: float | None) -> np.ndarray:
    """Float32 pixels from what `pack_pixels` stored (bit-exact: the scales are powers of two)."""
    px = np.asarray(stored).astype(np.float32)
    return px if scale is None else px * np.float32(scale)


class CohortStore:
    """Read and write canonical `Cine` records in a cohort folder."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.cines_dir = self.root / "cines"

    def __repr__(self):
        return f"CohortStore({str(self.root)!r}, {len(self)} cines)"

    def __len__(self):
        return len(self.ids())

    def __contains__(self, cine_id: str):
        return is_safe_id(cine_id) and self.path(cine_id).exists()

    def own(self, path: str | Path) -> Path:
        """`path`, a place the store writes, after checking that it resolves (links followed) inside the cohort: a
        link planted in the folder that leads out is refused, with the place named relative to the cohort."""
        try:
            return inside(self.root, path)
        except OutsideFolderError:
            rel = Path(path).relative_to(self.root) if Path(path).is_relative_to(self.root) else Path(path).name
            raise StoreError(f"cohort {self.root.name}: {rel} leads outside the cohort folder (a link?); refused to "
                             "write through it") from None

    def path(self, cine_id: str) -> Path:
        """Where a cine lives: always a child of `cines/` (an id that is not a safe name is refused)."""
        if not is_safe_id(cine_id):
            raise StoreError(f"{self.root}: {cine_id!r} is not a cine id (letters, digits, '-' and '_')")
        return inside(self.cines_dir, self.cines_dir / f"{cine_id}.zarr")

    def ids(self) -> list[str]:
        """Cine ids present (complete) in the store, sorted."""
        if not self.cines_dir.exists():
            return []
        return sorted(p.name[:-5] for p in self.cines_dir.glob("*.zarr") if not p.name.startswith("."))

    # ---- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self):
        """Hold the cohort's write lock (one writer at a time, so cleaning leftovers never hits a live write)."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.own(self.root / ".lock")
        try:  # never through a link (O_NOFOLLOW), never truncating, never waiting (a FIFO): it holds nothing
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise StoreError(f"cohort {self.root.name}: cannot open its lock file ({e.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"cohort {self.root.name}: its lock file .lock is not a plain file")
        with os.fdopen(fd, "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreBusyError(f"{self.root}: another process is writing this cohort") from None
            try:
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def clean_temporaries(self) -> list[Path]:
        """Remove the hidden temporary folders and files a killed write left behind (call under `writer()`); a
        folder that leads outside the cohort is refused, not cleaned."""
        dirs = [self.root, self.cines_dir, self.manifest_dir, *(self.root / ".ingest").glob("*")]
        found = [p for d in dirs if d.is_dir() and self.own(d) for p in d.glob(".*.tmp")]
        for p in found:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(self.own(p))
            else:
                p.unlink()
        return found

    # ---- where the cines come from -------------------------------------------------------
    def identity(self) -> dict | None:
        """What the cohort was built from (`cohort.json`: source and its settings), None for a new folder."""
        f = self.root / "cohort.json"
        try:
            return json.loads(f.read_text()) if f.is_file() else None
        except (OSError, ValueError):
            raise StoreError(f"cohort {self.root.name}: cohort.json is damaged; remove the cohort folder to start "
                             "afresh") from None

    def claim(self, identity: dict) -> None:
        """Record what the cohort is built from, refusing a folder that already holds another source or recipe
        (its cines would mix with these, and models trained on it would be reused for the wrong data)."""
        identity = json.loads(json.dumps(identity, default=to_jsonable, sort_keys=True))
        have = self.identity()
        if have is None and len(self):  # a cohort written before cohort.json: its cines say where they came from
            sources = set(self.manifest(columns=["source"])["source"].astype(str))
            have = {"source": sources.pop()} if len(sources) == 1 else {"source": sorted(sources)}
            if have["source"] == identity.get("source"):
                have = None  # the same source: adopt the new, fuller record
        if have is not None and have != identity:
            what = (f"{have.get('source')} cines" if have.get("source") != identity.get("source") else
                    f"{identity.get('source')} cines made with other settings")
            raise CohortMismatch(f"cohort {self.root.name} already holds {what}; use another run folder (--out) or "
                                 "remove that cohort to build this one")
        if have is None:
            atomic_write_json(self.own(self.root / "cohort.json"), identity)

    def fingerprint(self) -> str:
        """A short hash of what the cohort holds (its source, cine ids and splits): part of every reuse key, so
        a model or cache made on another cohort is never taken for this one's."""
        h = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode())
        h.update("\n".join(self.ids()).encode())
        splits = self.root / "splits.csv"
        h.update(splits.read_bytes() if splits.is_file() else b"")
        return h.hexdigest()[:16]

    def intact(self, cine_id: str) -> bool:
        """Whether a cine's folder holds what a complete write leaves (its attributes, pixels and frame times with
        the recorded shape): cheap, no pixel is read. A marker's claim is checked with this."""
        try:
            g = zarr.open_group(str(self.path(cine_id)), mode="r")
            shape = list(g.attrs["shape"])
            return list(g["pixels"].shape) == shape and g["frame_times"].shape[0] == shape[0]
        except Exception:  # noqa: BLE001 (any failure to open is damage)
            return False

    def write(self, cine: Cine, overwrite: bool = False) -> Path:
        """Write one cine atomically (compressed, whole frames per chunk); skip if present unless overwrite."""
        cine.validate()
        dst = self.path(cine.cine_id)
        if dst.exists() and not overwrite:
            return dst
        with atomic_dir(dst) as tmp:
            g = zarr.open_group(str(tmp), mode="w")
            packed, scale = pack_pixels(cine.pixels)
            g.create_array("pixels", data=packed, chunks=frame_chunks(packed), compressors=FRAME_CODEC)
            g.create_array("frame_times", data=cine.frame_times)
            if cine.labels is not None:
                g.create_array("labels", data=cine.labels, chunks=frame_chunks(cine.labels), compressors=FRAME_CODEC)
                g.create_array("labelled", data=cine.labelled.astype(np.uint8))
            for name, pts in cine.landmarks.items():
                g.create_array(f"landmarks/{name}", data=pts)
            g.attrs.update(json.loads(json.dumps(dict(
                subject=cine.subject, view=cine.view, spacing=list(cine.spacing), ed=cine.ed, es=cine.es,
                source=cine.source, shape=list(cine.pixels.shape), pixel_scale=scale, meta=cine.meta),
                default=to_jsonable)))
        return dst

    def write_splits(self, splits: dict[str, str]) -> Path:
        """Fix the subject -> split assignment every notebook uses."""
        bad = {s for s in splits.values() if s not in SPLITS}
        if bad:
            raise ValueError(f"unknown split names {sorted(bad)}; expected {SPLITS}")
        df = pd.DataFrame(sorted(splits.items()), columns=["subject", "split"])
        return atomic_write_text(self.own(self.root / "splits.csv"), df.to_csv(index=False))

    def write_report(self, bad: list[dict], extra: dict | None = None) -> Path:
        """Record the items a batch job could not process (file, error, message)."""
        return atomic_write_json(self.own(self.root / "report.json"), {"n_bad": len(bad), "bad": bad, **(extra or {})})

    def report(self) -> dict:
        p = self.root / "report.json"
        return json.loads(self.own(p).read_text()) if p.exists() else {"n_bad": 0, "bad": []}

    # ---- reading -------------------------------------------------------------------------
    def group(self, cine_id: str) -> zarr.Group:
        """The zarr group of one cine (lazy, random access per frame)."""
        p = self.path(cine_id)
        if not p.exists():
            raise StoreError(f"{self.root}: no cine {cine_id!r}")
        return zarr.open_group(str(p), mode="r")

    def attrs(self, cine_id: str) -> dict:
        return dict(self.group(cine_id).attrs)

    def read(self, cine_id: str, frames: Iterable[int] | slice | None = None) -> Cine:
        """Load one cine (optionally a subset of frames) as a canonical record."""
        g = self.group(cine_id)
        a = dict(g.attrs)
        sel = slice(None) if frames is None else (frames if isinstance(frames, slice) else list(frames))
        take = (lambda arr: arr[sel]) if isinstance(sel, slice) else (lambda arr: arr.get_orthogonal_selection((sel,)))
        arrays = {k: v for k, v in g.members(max_depth=None) if isinstance(v, zarr.Array)}  # one listing
        lm = {k.removeprefix("landmarks/"): np.asarray(take(arrays[k])) for k in sorted(arrays)
              if k.startswith("landmarks/")}
        ed, es = a.get("ed"), a.get("es")
        if frames is not None:  # re-index ED/ES into the selected frames (None when not selected)
            idx = np.arange(a["shape"][0])[sel].tolist()
            ed = idx.index(ed) if ed in idx else None
            es = idx.index(es) if es in idx else None
        return Cine(
            subject=a["subject"], view=a["view"], pixels=unpack_pixels(take(arrays["pixels"]), a.get("pixel_scale")),
            spacing=tuple(a["spacing"]), frame_times=np.asarray(take(arrays["frame_times"])),
            labels=np.asarray(take(arrays["labels"])) if "labels" in arrays else None,
            labelled=np.asarray(take(arrays["labelled"])).astype(bool) if "labelled" in arrays else None,
            landmarks=lm, ed=ed, es=es, source=a.get("source", "unknown"), meta=a.get("meta", {}))

    def lazy(self, cine_id: str, array: str = "pixels"):
        """One array of a cine as a `dask.array` of a frame per chunk: nothing is read until it is computed, so a big
        cohort's cines can be sliced, reduced or mapped frame by frame. Pixels come as float32."""
        import dask.array as da

        g = self.group(cine_id)
        z = g[array]
        a = da.from_zarr(z, chunks=(1,) + z.shape[1:])
        if array != "pixels":
            return a
        scale = g.attrs.get("pixel_scale")
        return a.astype(np.float32) if scale is None else a.astype(np.float32) * np.float32(scale)

    def map(self, fn: Callable, cine_ids: Sequence[str], *, args: tuple = (), kwargs: dict | None = None,
            scheduler=None, workers: int = 1, desc: str = "cines", progress: bool = True) -> dict:
        """`fn(*args, cine, **kwargs)` for every listed cine, the cine read where `fn` runs: one Dask task per cine
        with `scheduler` or `workers` > 1 (`cmrlib.dask_tasks`; `args`, such as a model, go to each worker once), else
        in this process. cine_id -> result, in the order given; an error is raised with the cine named."""
        from .dask_tasks import client, map_tasks

        task = partial(_on_cine, root=str(self.root), fn=fn, kwargs=kwargs or {})
        out = {}
        with client(scheduler, workers) as c:
            for cid, res, err in map_tasks(task, list(cine_ids), c, args=tuple(args), desc=desc, unit="cine",
                                           progress=progress):
                if err is not None:
                    err.add_note(f"{self.root}: cine {cid}")
                    raise err
                out[cid] = res
        return {cid: out[cid] for cid in cine_ids}

    def __iter__(self) -> Iterator[Cine]:
        for i in self.ids():
            yield self.read(i)

    def splits(self) -> dict[str, str]:
        """subject -> train / valid / test ({} before the first split); a damaged file is a StoreError."""
        p = self.root / "splits.csv"
        if not p.exists():
            return {}
        self.own(p)
        try:
            df = pd.read_csv(p, dtype=str)
            ok = list(df.columns) == ["subject", "split"] and df["split"].isin(SPLITS).all()
        except (ValueError, OSError, pd.errors.ParserError):
            ok = False
        if not ok:
            raise StoreError(f"cohort {self.root.name}: splits.csv is damaged; the next ingest (or notebook 00 on "
                             "this run folder) rewrites it")
        return dict(df.itertuples(index=False, name=None))

    def unsplit_subjects(self) -> set[str]:
        """Subjects with cines on disk but no train/valid/test assignment (left by an interrupted run)."""
        return set(self.manifest(columns=["subject"])["subject"].astype(str)) - set(self.splits())

    # ---- the manifest: parquet parts appended as cines arrive --------------------------------
    @property
    def manifest_dir(self) -> Path:
        return self.root / "manifest"

    def manifest(self, refresh: bool = False, columns: Sequence[str] | None = None, split: bool = True
                 ) -> pd.DataFrame:
        """One row per cine with ids, geometry, ED/ES, split and flattened metadata.

        Kept as parquet parts under `manifest/`: reading it costs one columnar read (of `columns` only, when
        given) while the cines folder is unchanged since the last sync; otherwise only the cines added or removed
        since are looked at, and their rows appended or dropped. refresh: rebuild every row from the cines.
        split: join the split from splits.csv (off for the step that rewrites it)."""
        want = None if columns is None else [c for c in columns if c != "split"]
        try:
            state = "damaged" if refresh else self._manifest_state()
            if state == "damaged":
                self._rebuild_manifest()
            elif state == "stale":
                self._sync_manifest()
            df = self._read_parts(want)
        except StoreError:
            raise
        except (OSError, ValueError):  # an unreadable part (pyarrow's errors are ValueErrors): rebuilt from the cines
            self._rebuild_manifest()
            df = self._read_parts(want)
        if split and (columns is None or "split" in columns):
            split = df["subject"].astype(str).map(self.splits()) if len(df) else pd.Series([], dtype=object)
            df.insert(min(4, len(df.columns)), "split", split.astype(object).where(split.notna(), None))
        return df

    def conditions(self) -> dict[str, str]:
        """Subject -> its condition (the manifest's `condition`; empty where it has none): what notebook 07 groups
        the measures by."""
        m = self.manifest()
        return m.drop_duplicates("subject").set_index("subject")["condition"].to_dict() if "condition" in m else {}

    def append_manifest(self, cine_ids: Sequence[str]) -> None:
        """Add the rows of cines just written (a batch job calls this per batch, so readers see them at once)."""
        rows = [r for r in map(self._row, cine_ids) if r is not None]
        if rows:
            self._write_part(pd.DataFrame(rows))

    def _row(self, cid: str) -> dict | None:
        """The manifest row of a cine; None for a damaged one (left out until it is written again)."""
        try:
            a = self.attrs(cid)
            shape = a["shape"]
        except Exception:  # noqa: BLE001 (a cine folder whose attributes cannot be read is damaged)
            return None
        return {"cine_id": cid, "subject": str(a["subject"]), "view": a["view"], "source": a.get("source"),
                "n_frames": shape[0], "n_slices": shape[1] if len(shape) == 4 else 1, "height": shape[-2],
                "width": shape[-1], "spacing_mm": json.dumps(a["spacing"]), "ed": a.get("ed"), "es": a.get("es"),
                "path": str(Path("cines") / f"{cid}.zarr"), **_flatten(a.get("meta", {}))}

    def _parts(self) -> list[Path]:
        return sorted(self.manifest_dir.glob("part-*.parquet")) if self.manifest_dir.exists() else []

    def _read_parts(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Every part's rows (a cine's last row wins), in cine id order."""
        want = None if columns is None else ["cine_id", *(c for c in columns if c != "cine_id")]
        for attempt in range(3):  # a writer merging parts meanwhile removes the old ones after writing the new
            try:
                frames = [f for f in (_read_parquet(p, want) for p in self._parts()) if len(f)]
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        if not frames:
            return pd.DataFrame(columns=[c for c in MANIFEST_COLUMNS
                                         if c != "split" and (columns is None or c in columns)])
        df = frames[0]
        if len(frames) > 1:
            df = pd.concat(frames, ignore_index=True).drop_duplicates("cine_id", keep="last")
            df = df.sort_values("cine_id", kind="stable").reset_index(drop=True)
        return df if columns is None else df[[c for c in columns if c in df.columns]]

    def _write_part(self, df: pd.DataFrame, replace: bool = False) -> Path:
        """One more parquet part, written atomically (or the only one, with `replace`); many parts are merged."""
        old = self._parts() if replace else []
        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        p = self.own(self.manifest_dir / f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet")
        tmp = p.with_name(f".{p.name}.tmp")
        _arrow_safe(df.sort_values("cine_id", kind="stable") if len(df) else df).to_parquet(tmp, index=False)
        os.replace(tmp, p)
        for q in old:
            q.unlink(missing_ok=True)
        self._record_parts()
        if len(self._parts()) > MAX_PARTS:
            self._write_part(self._read_parts(), replace=True)
        return p

    def _cines_stamp(self) -> int | None:
        """The cines folder's change time (adding or removing a cine changes it), None while too recent to trust
        (a coarse file-system clock could give a later change the same time)."""
        try:
            m = self.cines_dir.stat().st_mtime_ns
        except FileNotFoundError:
            return -1
        return m if time.time_ns() - m > STAMP_SETTLE_NS else None

    def _state(self) -> dict:
        try:
            state = json.loads((self.manifest_dir / "state.json").read_text())
            return state if isinstance(state, dict) else {}
        except (OSError, ValueError):
            return {}

    def _manifest_state(self) -> str:
        """'fresh', 'stale' (cines added or removed since the last sync: only their rows change) or 'damaged' (a
        part the manifest wrote is gone, or one it did not write is there: every row is rebuilt from the cines)."""
        state = self._state()
        if "parts" not in state:
            return "damaged" if self._parts() or self.ids() else "stale"
        if sorted(state["parts"]) != [q.name for q in self._parts()]:
            return "damaged"
        seen = state.get("cines_mtime_ns")
        return "stale" if seen is None or seen != self._cines_stamp() else "fresh"

    def _record_parts(self) -> None:
        """Note the parts the manifest consists of now (a part deleted behind its back is then noticed)."""
        self._write_state(dict(self._state(), parts=[q.name for q in self._parts()]))

    def _write_state(self, state: dict) -> None:
        if self.root.exists():
            atomic_write_json(self.own(self.manifest_dir / "state.json"), state)

    def _sync_manifest(self) -> None:
        """Append the rows of cines on disk the manifest lacks; drop the rows of cines no longer there."""
        stamp = self._cines_stamp()
        on_disk = set(self.ids())
        have = set(self._read_parts(["cine_id"])["cine_id"].astype(str))
        new = sorted(on_disk - have)
        if have - on_disk:
            df = self._read_parts()
            rows = [r for r in map(self._row, new) if r is not None]
            df = pd.concat([df[df["cine_id"].astype(str).isin(on_disk)], pd.DataFrame(rows)])
            self._write_part(df, replace=True)
        else:
            self.append_manifest(new)
        self._stamp(stamp)

    def _rebuild_manifest(self) -> None:
        stamp = self._cines_stamp()
        self._write_part(pd.DataFrame([r for r in map(self._row, self.ids()) if r is not None]), replace=True)
        self._stamp(stamp)

    def _stamp(self, stamp: int | None) -> None:
        self._write_state({"cines_mtime_ns": stamp, "parts": [q.name for q in self._parts()]})

    def select(self, view: str | Sequence[str] | None = None, split: str | Sequence[str] | None = None,
               limit: int | None = None, interleave: bool = False) -> list[str]:
        """Cine ids of some views and splits, sorted by id within a view.

        view/split: one name, several, or None for all. limit: at most this many per view (with view=None: in
        all). Several views come view after view, or one of each in turn with `interleave` (a capped training
        set then holds every view)."""
        m = self.manifest(columns=["cine_id", "subject", "view", "split"])
        if m.empty:
            return []
        if split is not None:
            m = m[m["split"].isin([split] if isinstance(split, str) else list(split))]
        if view is None:
            return m["cine_id"].tolist()[:limit]
        per_view = [m.loc[m["view"] == v, "cine_id"].tolist()[:limit]
                    for v in ([view] if isinstance(view, str) else view)]
        if interleave:
            return [i for group in zip_longest(*per_view) for i in group if i is not None]
        return [i for ids in per_view for i in ids]
