"""Seeding, atomic writes and run provenance shared by the library and the notebooks."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

PACKAGES = ("cmrlib", "numpy", "torch", "torchvision", "fastai", "opencv-python-headless", "scikit-learn",
            "pingouin", "zarr", "nibabel", "pydicom", "papermill", "pandas", "umap-learn", "monai", "timm", "dask",
            "distributed", "pyarrow", "accelerate")


def seed_everything(seed: int = 0, deterministic: bool = True) -> int:
    """Seed python, numpy and torch (and make torch deterministic on CPU) so a run repeats exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency, but keep seeding usable without it
        return seed
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return seed


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block from `seed` (python, numpy and torch) and hand the caller back its own random state afterwards:
    a library step seeds itself, so its result does not depend on what ran before, and leaves no trace."""
    import torch

    state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield seed
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])


def rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """A numpy Generator from a seed (or pass one through), so every random choice flows from a seed."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def seed_for(run_seed: int, *names) -> int:
    """A consumer's seed derived from the run seed and its name (as MONAI's set_random_state gives each transform
    its own stream): independent streams without hand-picked offsets, the same for the same run seed and names."""
    key = "/".join([str(int(run_seed)), *map(str, names)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "little")


class OutsideFolderError(ValueError):
    """A write would land outside the folder it belongs to."""


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path`, after checking that it resolves (links followed) to a place under `root`; else OutsideFolderError."""
    root, path = Path(root).resolve(), Path(path)
    if not path.resolve().is_relative_to(root):
        raise OutsideFolderError(f"{path} would be written outside {root}")
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, suffix: str = ""):
    """Yield a temporary sibling file that becomes `path` only if the block finishes: readers see the old file or
    the whole new one, never half of it (`suffix`: for writers that insist on one, as `np.savez` on .npz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text so that readers see the old file or the whole new one, never half of it."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


SPREADSHEET_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a text cell starting so is run by a spreadsheet


def spreadsheet_safe(df):
    """A table to write as CSV for people to open: a text cell a spreadsheet would run as a formula (`=`, `+`, `-`,
    `@`, tab, CR first) gets a leading apostrophe (the OWASP rule); numbers and other text stay as they are."""
    def safe(v):
        if isinstance(v, str) and v.startswith(SPREADSHEET_FORMULA):
            try:
                float(v)
                return v  # a negative number written as text
            except ValueError:
                return "'" + v
        return v

    import pandas as pd

    out = df.copy()
    for c in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[c]) or pd.api.types.is_bool_dtype(out[c])):
            out[c] = out[c].map(safe)
    return out.rename(columns=lambda c: safe(c) if isinstance(c, str) else c)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write JSON (numpy scalars and arrays converted)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=to_jsonable) + "\n")


def save_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray], settings: Any, **meta: Any) -> Path:
    """Arrays to `path` (.npz) and the settings that made them (plus `meta`) to its .json, each written atomically,
    so `load_arrays` reuses them only for the same settings."""
    path = Path(path)
    with atomic_file(path, ".npz") as tmp:
        np.savez(tmp, **arrays)
    atomic_write_json(path.with_suffix(".json"), dict(settings=settings, **meta))
    return path


def load_arrays(path: str | os.PathLike, settings: Any) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, meta) written by `save_arrays` with these settings, else None (missing, or other settings)."""
    path = Path(path)
    meta_f = path.with_suffix(".json")
    if not path.exists() or not meta_f.exists():
        return None
    meta = json.loads(meta_f.read_text())
    if meta.get("settings") != json.loads(json.dumps(settings, default=to_jsonable)):
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}, meta


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary sibling folder that becomes `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def to_jsonable(o: Any) -> Any:
    """JSON fallback for numpy types and paths."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


RUN_OUTPUTS = ("figures", "docs/results.md")  # what `make reproduce` itself writes into the repository


def git_commit(cwd: str | os.PathLike | None = None) -> str | None:
    """The current commit (with '-dirty' when the tree has changes other than a run's own outputs, `RUN_OUTPUTS`),
    or None outside git."""
    try:
        run = lambda *a: subprocess.run(["git", *a], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        sha = run("rev-parse", "HEAD")
        changed = run("status", "--porcelain", "--untracked-files=no", "--", ":/",
                      *(f":(top,exclude){p}" for p in RUN_OUTPUTS))
        return sha + ("-dirty" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages a result depends on."""
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: Linux VmHWM, which starts afresh at exec (getrusage's
    ru_maxrss is inherited from the parent across fork + exec, so a child launched by a large process reports
    the parent's peak); ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_path(path: str | os.PathLike | None) -> Path | None:
    """A path parameter as a real path: `$VAR` references (how the runner passes a user's data paths, so they
    never appear in run.json or a notebook) and `~` expanded; None stays None."""
    return Path(os.path.expandvars(str(path))).expanduser() if path else None


def data_root(path: str | os.PathLike | None = None) -> Path | None:
    """The real-data folder: an explicit path, else $CMRLIB_DATA, else None (callers skip or explain)."""
    p = data_path(path or os.environ.get("CMRLIB_DATA"))
    return p.resolve() if p else None


def cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where bf16 inference is 2-3x faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def trains_bf16_on_cpu(bf16: bool) -> bool:
    """Whether `bf16: true` gives bfloat16 autocast on this CPU: only where it computes bfloat16 natively (emulated
    bfloat16 is slower than float32, so elsewhere it trains in float32)."""
    return bool(bf16) and cpu_bf16()


def float32_sentence(notebooks: list[str]) -> str:
    """What a run on a CPU without bfloat16 says of its notebooks set to train in it, in its log and its report."""
    return (f"notebooks {', '.join(notebooks)} (`bf16: true`) train in float32 on this CPU, which computes no "
            "bfloat16 (no AVX512-BF16 or AMX): slower than their budgets, which were measured on a CPU with it, and "
            "with learned numbers that differ from a bf16 run's")
