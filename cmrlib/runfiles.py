"""A run folder may come from elsewhere (a colleague's tarball, a shared disk): what cmrlib reads from it or writes
into it must stay inside it. One checked reader for every run-folder file (a regular file inside the folder, of
bounded size: never a link that leads out, a FIFO or a device) and one check for every place a run writes into
(the path and every link on the way to it resolve inside the run folder, so that replacing a model never deletes
anything elsewhere).

    text = runfiles.read_text(run_dir, run_dir / "run.json")
    table = runfiles.read_csv(run_dir, run_dir / "02" / "afd_table.csv")
    runfiles.writable(run_dir, run_dir / "predictors")     # before a notebook writes there
"""
from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

MAX_TABLE_BYTES = 256 * 2**20  # a result table larger than this is not one a notebook wrote
MAX_JSON_BYTES = 16 * 2**20  # a run record, a headline list, a settings file


class RunFileError(ValueError):
    """A run-folder file or folder cmrlib will not read or write: a link leading out of the run folder, not a
    regular file, too large, or not the data it should be. The message names it (inside the run) and the problem."""


def shown(root: Path, path: Path) -> str:
    """A path as a message names it: relative to the run folder (whose own name may be a person's)."""
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return Path(path).name


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path` resolved (every link followed), refused when it leads outside the run folder `root` (`utils.inside`,
    the store's own rule)."""
    from .utils import OutsideFolderError, inside as within

    root, path = Path(root), Path(path)
    try:
        within(root, path)
    except OutsideFolderError:
        raise RunFileError(f"{shown(root, path)}: a link that leads outside the run folder; refused (the run folder "
                           "must hold its own files)") from None
    return path.resolve()


def writable(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path` (a file or folder a run writes) when it and every link inside the run folder on the way to it stay in
    the run folder, and it is no link itself (a link is never written or deleted through); `RunFileError`
    otherwise."""
    root, path = Path(root), Path(path)
    real = inside(root, path)
    if path.is_symlink():
        raise RunFileError(f"{shown(root, path)}: a link where the run writes; refused (replace it with a folder "
                           "of the run's own)")
    return real


def links_out(root: str | os.PathLike, folder: str | os.PathLike, depth: int = 3) -> list[str]:
    """Every link under `folder` (to `depth` levels, links not followed) that leads outside the run folder `root`,
    named inside it."""
    root, folder = Path(root), Path(folder)
    found, top = [], root.resolve()
    if not folder.is_dir() or folder.is_symlink():
        return found

    def walk(d: Path, level: int):
        try:
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            p = Path(e.path)
            if e.is_symlink():
                real = p.resolve()
                if real != top and top not in real.parents:
                    found.append(shown(root, p))
            elif e.is_dir(follow_symlinks=False) and level < depth:
                walk(p, level + 1)
    walk(folder, 0)
    return found


def check_tree(root: str | os.PathLike, *folders: str | os.PathLike) -> None:
    """Refuse a run folder whose folders (those a notebook writes into) are, or hold, links that lead out of it."""
    for f in folders:
        if Path(f).exists() or Path(f).is_symlink():
            writable(root, f)
        bad = links_out(root, f)
        if bad:
            raise RunFileError(f"{bad[0]}: a link that leads outside the run folder; refused (the run folder must "
                               "hold its own files)")


def guard(root: str | os.PathLike, *places: str | os.PathLike) -> None:
    """Before anything is written: refuse each place (a file or folder cmrlib creates or replaces under `root`) that
    is a link, resolves outside `root`, or is a folder holding a link that leads out (`writable`, `links_out`)."""
    for place in places:
        place = Path(place)
        if place.exists() or place.is_symlink():
            writable(root, place)
        if place.is_dir():
            check_tree(root, place)


def read_bytes(root: str | os.PathLike, path: str | os.PathLike, limit: int = MAX_TABLE_BYTES) -> bytes:
    """A run-folder file's bytes: a regular file inside the run folder of at most `limit` bytes (a FIFO or a device
    is never opened: it could block or never end)."""
    root, path = Path(root), Path(path)
    name = shown(root, path)
    inside(root, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise RunFileError(f"{name}: not found") from None
    except OSError as e:
        raise RunFileError(f"{name}: cannot be opened ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise RunFileError(f"{name}: not a regular file; refused")
        if st.st_size > limit:
            raise RunFileError(f"{name}: {st.st_size / 2**20:.0f} MiB, more than such a file holds "
                               f"(at most {limit / 2**20:.0f} MiB)")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise RunFileError(f"{name}: grew past {limit / 2**20:.0f} MiB while read")
    return data


def read_text(root, path, limit: int = MAX_TABLE_BYTES) -> str:
    """A run-folder file as UTF-8 text (`read_bytes`)."""
    try:
        return read_bytes(root, path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise RunFileError(f"{shown(Path(root), Path(path))}: not UTF-8 text") from None


def no_duplicates(pairs: list[tuple]) -> dict:
    """A JSON object's pairs as a dict; a key given twice is refused (the last one would silently win)."""
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"the key {str(twice)[:40]!r} is given twice")
    return dict(pairs)


def loads(text: str | bytes):
    """JSON with every object's keys once (`no_duplicates`)."""
    return json.loads(text, object_pairs_hook=no_duplicates)


def read_json(root, path, limit: int = MAX_JSON_BYTES, kind: type | None = dict):
    """A run-folder JSON file (`read_bytes`, keys once), of type `kind` when given."""
    try:
        value = loads(read_bytes(root, path, limit))
    except (ValueError, RecursionError) as e:
        raise RunFileError(f"{shown(Path(root), Path(path))}: not readable JSON ({str(e)[:80]})") from None
    if kind is not None and not isinstance(value, kind):
        raise RunFileError(f"{shown(Path(root), Path(path))}: not a JSON {kind.__name__}")
    return value


def read_csv(root, path, limit: int = MAX_TABLE_BYTES, **kw):
    """A run-folder CSV table (`read_bytes`) as a DataFrame."""
    import pandas as pd

    data = read_bytes(root, path, limit)
    try:
        return pd.read_csv(io.BytesIO(data), **kw)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise RunFileError(f"{shown(Path(root), Path(path))}: not a readable table ({type(e).__name__})") from None
