"""A run's label store (`<run>/labels/`): every cine's labels and per-frame entropy sums by each network that read
it, one `.npz` per cine and network, named by what the labels depend on, so that the notebooks of one run (and a
rerun of any of them) segment a cine once."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from ...record import Cine
from .predict import log_prior, predict

DEFAULT_BS = 32  # frames per forward pass: a stored file names it (a batch's size can move a float in the last bit)


def cine_key(cine: Cine) -> tuple:
    """What a cine brings to its labels: its pixels (hashed in place, not copied), their shape and type, its spacing
    and its view."""
    pixels = memoryview(np.ascontiguousarray(cine.pixels)).cast("B")
    return (hashlib.blake2b(pixels, digest_size=16).hexdigest(), cine.pixels.shape, str(cine.pixels.dtype),
            tuple(map(float, cine.spacing)), cine.view)


def reading(net) -> tuple:
    """How a network reads a cine beyond its weights: its decision offsets, whether it mirrors and whether it centres
    on the heart."""
    return (bool(getattr(net, "tta", False)), bool(getattr(net, "centred", False)),
            tuple(np.asarray(log_prior(net), dtype=float).tolist()))


def network_key(net) -> tuple:
    """Everything about a network its labels depend on: its weights and public settings (`modelfile.fingerprint`),
    its reading and the CPU's bfloat16 reading (hashed once per network and call, not per cine)."""
    from ... import modelfile
    from ...learn import cpu_bf16

    return (modelfile.fingerprint(net), *reading(net), cpu_bf16())


def stored_name(key: tuple, net_key: tuple, options: dict) -> str:
    """A file name for a cine's labels that changes with everything they depend on: the cine (`cine_key`), the
    network (`network_key`) and the options `predict` is called with (batch size included)."""
    parts = (*key, *net_key, tuple(sorted(options.items())))
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest() + ".npz"


def read_stored(path: Path, shape: tuple) -> tuple[np.ndarray, dict] | None:
    """Labels and entropy sums a run folder holds for a cine, read as `runfiles` reads a run's files (a regular file
    in the folder, never a link out or a FIFO; no pickled object); None when absent, refused or not of the cine's
    shape (it is segmented again and replaced)."""
    from ...runfiles import read_bytes

    try:
        with np.load(io.BytesIO(read_bytes(path.parent, path)), allow_pickle=False) as z:
            lab, ent = z["labels"], z["entropy"]
    except (OSError, KeyError, ValueError):  # RunFileError is a ValueError
        return None
    if lab.shape != tuple(shape) or lab.dtype != np.uint8 or ent.ndim != 2 or ent.shape[1] != 4:
        return None
    return lab, {(int(t), int(k)): [float(total), int(count)] for t, k, total, count in ent}


def write_stored(path: Path, lab: np.ndarray, acc: dict) -> None:
    """Write a cine's labels and entropy sums (frame, structure, sum, pixels) atomically (float64 sums: read back
    exactly)."""
    from ...utils import atomic_file

    ent = np.array([[t, k, total, count] for (t, k), (total, count) in sorted(acc.items())],
                   dtype=np.float64).reshape(-1, 4)
    with atomic_file(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, labels=lab, entropy=ent)


def segmented(net, cine: Cine, folder: Path | None, key: tuple | None = None, net_key: tuple | None = None,
              bs: int = DEFAULT_BS, with_entropy: bool = True, **options) -> tuple[np.ndarray, dict]:
    """A cine's labels and entropy sums by `net` (`predict`'s options passed on): read from `folder` where it holds
    them, else segmented (and written there; None: not kept, and no entropy unless `with_entropy`)."""
    path = None if folder is None else \
        Path(folder) / stored_name(key or cine_key(cine), net_key or network_key(net), dict(options, bs=bs))
    if path is not None and (found := read_stored(path, cine.pixels.shape)) is not None:
        return found
    acc: dict | None = {} if with_entropy or path is not None else None
    lab = predict(net, cine, bs=bs, entropy=acc, **options)
    if path is not None:
        write_stored(path, lab, acc)
    return lab, acc or {}
