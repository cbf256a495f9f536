"""The one reader of a user's tables (MR labels for notebook 04, heart-failure labels for 05, targets for 06): a
regular file of bounded size, every column read with its declared type, the first bad cell named by file, line and
column, and a subject listed twice with different values refused. Messages name the file, never its folder (a
folder may carry a patient's name), and never a cell's or a header's text (a table may hold real identifiers, and
a table without its header row has a patient's row there).

    tab = read_table(path, {"subject": SUBJECT, "mr": ZERO_ONE}, what="labels table")
"""
from __future__ import annotations

import csv
import io
import math
import os
import stat
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

MAX_TABLE_BYTES = 64 << 20  # a million subjects with a few columns is about 30 MB


class TableError(ValueError):
    """A user's table that cannot be used: which file, which line, what is wrong."""


Parser = Callable[[str], object]  # a cell's text -> its value (NaN for an empty optional cell); ValueError if bad


def subject(text: str) -> str:
    """A subject id: any non-empty text."""
    if not text.strip():
        raise ValueError("an empty subject")
    return text.strip()


def number(text: str) -> float:
    """A finite number, or NaN for an empty cell (the message never repeats the cell)."""
    if not text.strip():
        return math.nan
    try:
        v = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(v):
        raise ValueError("not a finite number")
    return v


def zero_one(text: str) -> float:
    """0 or 1, or NaN for an empty cell."""
    v = number(text)
    if not (math.isnan(v) or v in (0.0, 1.0)):
        raise ValueError("not 0 or 1")
    return v


def percent(text: str) -> float:
    """A percentage 0-100, or NaN for an empty cell."""
    v = number(text)
    if not (math.isnan(v) or 0 <= v <= 100):
        raise ValueError("not a percentage 0-100")
    return v


def one_of(*choices: str) -> Parser:
    """One of `choices`, or NaN for an empty cell."""
    def parse(text: str):
        if not text.strip():
            return math.nan
        if text.strip() not in choices:
            raise ValueError(f"not one of {', '.join(choices)}")
        return text.strip()
    return parse


def _text(path: Path, what: str) -> str:
    """The file's text, after checking it is a regular file of bounded size (never a FIFO or a device: reading
    one would block or never end)."""
    name = path.name
    try:
        st = path.stat()
    except OSError:
        raise TableError(f"{what} {name}: not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise TableError(f"{what} {name}: not a regular file (a folder, device or pipe)")
    if st.st_size > MAX_TABLE_BYTES:
        raise TableError(f"{what} {name}: {st.st_size >> 20} MiB, larger than the {MAX_TABLE_BYTES >> 20} MiB a "
                         "table may have")
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | getattr(os, "O_NONBLOCK", 0))) as f:
            raw = f.read(MAX_TABLE_BYTES + 1)
    except OSError as e:
        raise TableError(f"{what} {name}: cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise TableError(f"{what} {name}: line {line}: not UTF-8 text") from None


def read_table(path: str | os.PathLike, columns: Mapping[str, Parser], *, required: tuple[str, ...] = ("subject",),
               any_of: tuple[str, ...] = (), extra: Parser | None = None, what: str = "table",
               key: str = "subject") -> pd.DataFrame:
    """A user's CSV as a DataFrame of typed columns: `columns` (name -> parser) where present, every other column
    through `extra` (dropped when None); `required` columns must be there, and at least one of `any_of`. Rows listed
    twice with the same values are kept once; the same `key` with different values is an error naming both lines."""
    path = Path(path)
    name = path.name
    text = _text(path, what)
    try:
        raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise TableError(f"{what} {name}: not a CSV table ({str(e).splitlines()[0][:120]})") from None
    header = [c.strip() for c in next(csv.reader(io.StringIO(text)), [])]
    twice = [i + 1 for i, c in enumerate(header) if header.count(c) > 1]
    if twice:  # pandas would rename the second one silently
        raise TableError(f"{what} {name}: line 1, columns {twice[0]} and {twice[1]} have the same name")
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in required if c not in raw.columns]
    if missing:  # its header's cells are not named: without a header row they are a patient's
        raise TableError(f"{what} {name}: line 1 (the header, {len(raw.columns)} columns) lacks the column(s) "
                         f"{missing}: the first line must name the columns")
    if any_of and not set(any_of) & set(raw.columns):
        raise TableError(f"{what} {name}: needs at least one of the columns {list(any_of)}")
    parsers = {c: columns.get(c, extra) for c in raw.columns if c in columns or extra is not None}
    out = {}
    for j, (col, parse) in enumerate(parsers.items()):
        values = []
        for i, cell in enumerate(raw[col]):
            try:
                values.append(parse(cell))
            except ValueError as e:  # the column by its position too: a header may hold anything
                shown = col if col in columns else f"{list(raw.columns).index(col) + 1}"
                raise TableError(f"{what} {name}: line {i + 2}, column {shown}: {e}") from None
        out[col] = values
    tab = pd.DataFrame(out, index=raw.index)
    return _one_row_per_key(tab, key, name, what)


def _one_row_per_key(tab: pd.DataFrame, key: str, name: str, what: str) -> pd.DataFrame:
    """Exact repeats dropped; a key twice with different values refused, naming the lines (not the key)."""
    if key not in tab:
        return tab
    tab = tab[~tab.astype(str).duplicated()]
    clash = tab[key].duplicated(keep=False)
    if clash.any():
        first = tab[key][clash].iloc[0]
        a, b = (tab.index[tab[key] == first][:2] + 2).tolist()
        raise TableError(f"{what} {name}: lines {a} and {b} give the same {key} different values "
                         f"({int(clash.sum())} rows in conflict); keep one row per {key}")
    return tab.reset_index(drop=True)
