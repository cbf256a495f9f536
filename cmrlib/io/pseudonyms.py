"""Stable pseudonyms for private subject ids (UK Biobank EIDs, identifying folder names).

The mapping lives only in a CSV the user names (`key,pseudonym`), written atomically with owner-only
permissions; it must sit outside the cohort folder. New keys get the next number, in sorted order, so a
re-run with the same file gives every subject the same pseudonym.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from ..tables import MAX_TABLE_BYTES
from ..utils import atomic_write_text


class PseudonymError(ValueError):
    """The pseudonym file is missing where required, misplaced or malformed."""


class Pseudonyms:
    """key -> pseudonym (`<prefix><6 digits>`), persisted in `path`."""

    def __init__(self, path: str | Path, prefix: str):
        self.path, self.prefix = Path(path).expanduser().resolve(), prefix
        self.map: dict[str, str] = {}
        if self.path.exists():  # its name is never printed: the user may have named it after a person
            if not self.path.is_file():  # a FIFO or device would block or never end
                raise PseudonymError("the pseudonym file is not a regular file")
            if self.path.stat().st_size > MAX_TABLE_BYTES:
                raise PseudonymError(f"the pseudonym file is larger than {MAX_TABLE_BYTES >> 20} MiB")
            try:
                rows = list(csv.reader(io.StringIO(self.path.read_text())))
            except (UnicodeDecodeError, csv.Error) as e:
                raise PseudonymError(f"the pseudonym file is not a readable CSV ({type(e).__name__})") from None
            if not rows or [c.strip() for c in rows[0][:2]] != ["key", "pseudonym"]:
                raise PseudonymError("the pseudonym file is not one (expected header 'key,pseudonym')")
            self.map = {r[0]: r[1] for r in rows[1:] if len(r) >= 2}

    def check_outside(self, folder: str | Path) -> "Pseudonyms":
        """Refuse a mapping file inside the cohort folder (it would travel with the data)."""
        if self.path.is_relative_to(Path(folder).expanduser().resolve()):
            raise PseudonymError(f"the pseudonym file must live outside the cohort folder {folder}")
        return self

    def _next(self) -> int:
        nums = [int(v[len(self.prefix):]) for v in self.map.values()
                if v.startswith(self.prefix) and v[len(self.prefix):].isdigit()]
        return max(nums, default=0) + 1

    def assign(self, keys) -> dict[str, str]:
        """Pseudonyms for keys, allocating (and saving) new ones as needed."""
        new = sorted(set(map(str, keys)) - set(self.map))
        n = self._next()
        for i, k in enumerate(new):
            self.map[k] = f"{self.prefix}{n + i:06d}"
        if new or not self.path.exists():
            self.save()
        return {str(k): self.map[str(k)] for k in keys}

    def save(self) -> Path:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["key", "pseudonym"])
        w.writerows(sorted(self.map.items()))
        atomic_write_text(self.path, buf.getvalue())
        os.chmod(self.path, 0o600)
        return self.path
