"""A trained model on disk is data: a folder holding a readable JSON (each network's architecture, named in the
project's own registry, with its constructor arguments and settings; the provenance) beside `weights.safetensors`.

    modelfile.save("runs/x/01/models/seg_sax.model", model, settings=...)
    model, meta = modelfile.load("runs/x/01/models/seg_sax.model")

Opening one never unpickles anything and imports nothing outside `cmrlib`: networks are built only by the
factories registered with `@architecture`, plain values only into the classes registered with `@record`, and
every tensor must be finite and fit its network exactly. A file that breaks any of this raises `ModelFileError`
naming the file and the problem.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import importlib
import inspect
import json
import math
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

FORMAT = 2  # the folder layout and the JSON's encoding; `read` refuses another
WEIGHTS = "weights.safetensors"
MAX_JSON_BYTES = 16 * 2**20  # a model's JSON is settings and names: anything larger is not one of ours
ARCHITECTURES: dict[str, Callable] = {}  # name -> factory of a torch module (`@architecture`)
RECORDS: dict[str, type] = {}  # name -> dataclass whose fields a model file may hold (`@record`)
_NAME = re.compile(r"^cmrlib(\.[a-z][a-z0-9_]*)+:[A-Za-z][A-Za-z0-9_]*$")  # no part may start with "_"
IMPORTABLE = ("cmrlib.data", "cmrlib.models.", "cmrlib.methods.")  # the only modules a name may import: where the
# factories and records live (`tests/test_modelfile.py` checks every module that registers one is among them)


class ModelFileError(ValueError):
    """A model file that cannot be opened as one: the message names the file and the problem."""


def _name(obj) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _bound(fn: Callable, args, kwargs) -> dict:
    """The arguments of one call by parameter name, defaults filled in (what rebuilds the same network)."""
    sig = inspect.signature(fn)
    b = sig.bind(*args, **kwargs)
    b.apply_defaults()
    out = {}
    for k, v in b.arguments.items():
        kind = sig.parameters[k].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(v)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if v:
                raise TypeError(f"{_name(fn)}: *args cannot be recorded in a model file")
        else:
            out[k] = v
    return out


def architecture(obj):
    """Register a network factory (a function or an `nn.Module` class): every module it builds remembers the
    factory's name and arguments, which is all a model file needs to build it again."""
    name = _name(obj)
    if inspect.isclass(obj):
        init = obj.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            if type(self) is obj:  # a subclass registers itself
                called = _bound(init, (self, *args), kwargs)
                del called["self"]
                self.__dict__["_arch"] = (name, called)

        obj.__init__ = __init__
        ARCHITECTURES[name] = obj
        return obj

    @functools.wraps(obj)
    def build(*args, **kwargs):
        module = obj(*args, **kwargs)
        module.__dict__["_arch"] = (name, _bound(obj, args, kwargs))
        return module

    ARCHITECTURES[name] = build
    return build


def record(cls):
    """Register a dataclass a model file may hold (a tracker's stages and settings, a probe's scalers)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__}: only dataclasses can be recorded in a model file")
    RECORDS[_name(cls)] = cls
    return cls


def importable(module: str) -> bool:
    """Whether a model file's name may import `module`: one where factories and records are registered."""
    return any(module == p or (p.endswith(".") and module.startswith(p)) for p in IMPORTABLE) \
        and not module.endswith(".__main__")


def _registered(name: str, table: dict, what: str):
    """A registry entry by name, importing its cmrlib module first (the name says which); nothing else."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ModelFileError(f"{what} {str(name)[:80]!r} is not a cmrlib name")
    module = name.split(":")[0]
    if name not in table and importable(module):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    if name not in table:
        raise ModelFileError(f"unknown {what} {name!r} (not in this cmrlib's registry)")
    return table[name]


# ---- encoding: values -> JSON + tensors -------------------------------------------------------------------------


class _Writer:
    """Turns a value into JSON, collecting its tensors."""

    def __init__(self):
        self.tensors: dict[str, Any] = {}

    def _tensor(self, t) -> str:
        key = f"t{len(self.tensors)}"
        self.tensors[key] = t.detach().cpu().contiguous()
        return key

    def encode(self, v, where: str = "value"):
        import pandas as pd
        import torch

        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, np.generic):
            return self.encode(v.item(), where)
        if isinstance(v, torch.nn.Module):
            return self._module(v, where)
        if isinstance(v, torch.Tensor):
            return {"$tensor": self._tensor(v)}
        if isinstance(v, np.ndarray):
            if v.dtype.kind in "biuf":
                return {"$array": self._tensor(torch.from_numpy(np.array(v, copy=True)))}
            if v.dtype.kind in "UO":
                return {"$list": [self.encode(x, where) for x in v.tolist()], "shape": list(v.shape)}
        if isinstance(v, pd.Series):
            return {"$series": dict(name=self.encode(v.name, where), index=self.encode(np.asarray(v.index), where),
                                    values=self.encode(v.to_numpy(), where))}
        if isinstance(v, pd.DataFrame):
            return {"$frame": dict(index=self.encode(np.asarray(v.index), where),
                                   columns=[[self.encode(c, where), self.encode(v[c].to_numpy(), where)] for c in v])}
        if isinstance(v, list):
            return [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, tuple):
            return {"$tuple": [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: self.encode(x, f"{where}.{k}") for k, x in v.items()}
            return {"$items": [[self.encode(k, where), self.encode(x, f"{where}[{k!r}]")] for k, x in v.items()]}
        if dataclasses.is_dataclass(v) and _name(type(v)) in RECORDS:
            return {"$record": _name(type(v)), "fields": {f.name: self.encode(getattr(v, f.name), f"{where}.{f.name}")
                                                          for f in dataclasses.fields(v)}}
        raise ModelFileError(f"{where}: a {type(v).__name__} cannot be stored in a model file "
                             "(register its class with @record or its factory with @architecture)")

    def _module(self, m, where: str, weights: bool = True) -> dict:
        """A network as its factory's name and arguments, its public attributes and (top level) its weights."""
        if "_arch" not in m.__dict__:
            raise ModelFileError(f"{where}: a {type(m).__name__} built outside the architecture registry cannot be "
                                 "stored (build it with a factory registered with @architecture)")
        name, args = m.__dict__["_arch"]
        attrs = {k: v for k, v in sorted(vars(m).items()) if not k.startswith("_") and k != "training"}
        out = {"$module": name, "args": self._args(args, where), "attrs": self.encode(attrs, f"{where}.attrs")}
        if weights:
            out["state"] = {k: self._tensor(t) for k, t in m.state_dict().items()}
        return out

    def _args(self, args: dict, where: str):
        import torch

        return {k: (self._module(v, f"{where}.{k}", weights=False) if isinstance(v, torch.nn.Module)
                    else self.encode(v, f"{where}.{k}")) for k, v in args.items()}


# ---- decoding: JSON + tensors -> values -------------------------------------------------------------------------


class _Reader:
    """Builds values back from JSON and tensors, only through the registries; every tensor used exactly once."""

    def __init__(self, tensors: dict):
        self.tensors, self.used = tensors, set()

    def _tensor(self, key):
        if not isinstance(key, str) or key not in self.tensors:
            raise ModelFileError(f"tensor {str(key)[:40]!r} is missing from {WEIGHTS}")
        if key in self.used:
            raise ModelFileError(f"tensor {key!r} is used twice")
        self.used.add(key)
        return self.tensors[key]

    def decode(self, v):
        import pandas as pd

        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.decode(x) for x in v]
        if not isinstance(v, dict):
            raise ModelFileError(f"unexpected JSON value {type(v).__name__}")
        tags = [k for k in v if k.startswith("$")]
        if not tags:
            return {k: self.decode(x) for k, x in v.items()}
        tag = tags[0]
        if tag == "$float":
            if v[tag] not in ("nan", "inf", "-inf"):
                raise ModelFileError(f"bad $float {str(v[tag])[:20]!r}")
            return float(v[tag])
        if tag == "$tuple":
            return tuple(self.decode(x) for x in self._list(v[tag]))
        if tag == "$items":
            return {self._key(self.decode(k)): self.decode(x) for k, x in self._pairs(v[tag])}
        if tag == "$tensor":
            return self._tensor(v[tag])
        if tag == "$array":
            return self._tensor(v[tag]).numpy()
        if tag == "$list":
            return np.array(self.decode(self._list(v[tag])), dtype=object).reshape(v.get("shape", -1))
        if tag == "$series":
            s = v[tag]
            return pd.Series(self.decode(s["values"]), index=self.decode(s["index"]), name=self.decode(s["name"]))
        if tag == "$frame":
            f = v[tag]
            cols = {self._key(self.decode(c)): self.decode(x) for c, x in self._pairs(f["columns"])}
            return pd.DataFrame(cols, index=self.decode(f["index"]))
        if tag == "$record":
            cls = _registered(v[tag], RECORDS, "record")
            fields = self.decode(v.get("fields", {}))
            names = {f.name for f in dataclasses.fields(cls)}
            if not isinstance(fields, dict) or set(fields) != names:
                raise ModelFileError(f"{v[tag]}: fields do not match the class")
            return cls(**fields)
        if tag == "$module":
            return self._module(v)
        raise ModelFileError(f"unknown tag {tag[:30]!r}")

    @staticmethod
    def _list(v) -> list:
        if not isinstance(v, list):
            raise ModelFileError("expected a JSON list")
        return v

    def _pairs(self, v) -> list:
        if not all(isinstance(p, list) and len(p) == 2 for p in self._list(v)):
            raise ModelFileError("expected [key, value] pairs")
        return v

    @staticmethod
    def _key(k):
        try:
            hash(k)
        except TypeError:
            raise ModelFileError("a dict key that is not a plain value") from None
        return k

    def _build(self, v) -> Any:
        factory = _registered(v["$module"], ARCHITECTURES, "architecture")
        args = self._args(v.get("args", {}))
        _bounded(v["$module"], args)
        if "pretrained" in args:
            args["pretrained"] = False  # the weights come from this file, never from a download or a cache
        try:
            m = factory(**args)
        except Exception as e:
            raise ModelFileError(f"{v['$module']}: cannot be built from the file's arguments ({type(e).__name__}: "
                                 f"{str(e)[:200]})") from None
        attrs = self.decode(v.get("attrs", {}))
        if not isinstance(attrs, dict):
            raise ModelFileError(f"{v['$module']}: attributes are not a mapping")
        for k, x in attrs.items():
            if k.startswith("_") or k == "training" or k in m._modules or k in m._parameters or k in m._buffers:
                raise ModelFileError(f"{v['$module']}: attribute {k[:40]!r} is not a plain setting")
            setattr(m, k, x)
        return m

    def _fits(self, v, state: dict) -> None:
        """Before the network is built: built on torch's meta device (shapes only, no memory, with a reader of its
        own), its weights' names, shapes and dtypes must be the file's, so hostile arguments cost nothing; one the
        meta device cannot build is refused, never built for real."""
        import torch

        try:
            with torch.device("meta"):
                own = _Reader(self.tensors)._build(v).state_dict()
        except ModelFileError:
            raise
        except Exception as e:  # never a real build of what the meta device refused
            raise ModelFileError(f"{v['$module']}: cannot be built from the file's arguments ({type(e).__name__}: "
                                 f"{str(e)[:200]})") from None
        _check_state(v["$module"], own, state)

    def _args(self, args) -> dict:
        if not isinstance(args, dict):
            raise ModelFileError("constructor arguments are not a mapping")
        return {k: (self._build(x) if isinstance(x, dict) and "$module" in x else self.decode(x))
                for k, x in args.items()}

    def _module(self, v):
        import torch

        state = v.get("state")
        if not isinstance(state, dict):
            raise ModelFileError(f"{v['$module']}: no weights listed")
        state = {k: self._tensor(key) for k, key in state.items()}
        self._fits(v, state)
        m = self._build(v)
        _check_state(v["$module"], m.state_dict(), state)
        nonfinite = [k for k, t in state.items() if t.is_floating_point() and not bool(t.isfinite().all())]
        if nonfinite:
            raise ModelFileError(f"{v['$module']}: non-finite weights (NaN or inf) in {nonfinite[:3]}")
        with torch.no_grad():
            m.load_state_dict(state, strict=True)
        return m.eval()


ARG_LIMIT = 65536  # no constructor argument of a cmrlib network (a width, depth, size or count) comes near it
ARG_ITEMS = 64  # nor a list of more settings


def _bounded(name: str, args: dict) -> None:
    """Refuse a constructor argument no cmrlib network takes (a number beyond ±ARG_LIMIT or not finite, a list of
    more than ARG_ITEMS) before anything is built: a hostile count costs nothing."""
    def check(k, x, depth=0):
        if isinstance(x, bool) or x is None or isinstance(x, str):
            return
        if isinstance(x, (int, float)):
            if not math.isfinite(x) or abs(x) > ARG_LIMIT:
                raise ModelFileError(f"{name}: argument {str(k)[:40]} = {x:g} is beyond any network's "
                                     f"(±{ARG_LIMIT})")
        elif isinstance(x, (list, tuple)):
            if len(x) > ARG_ITEMS or depth > 4:
                raise ModelFileError(f"{name}: argument {str(k)[:40]} holds {len(x)} items (at most {ARG_ITEMS})")
            for y in x:
                check(k, y, depth + 1)
        elif isinstance(x, dict):
            for kk, y in x.items():
                check(kk, y, depth + 1)
    for k, x in args.items():
        check(k, x)


def _check_state(name: str, own: dict, state: dict) -> None:
    """A file's weights fit a network exactly: the same names, shapes and dtypes (a cast is never made)."""
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ModelFileError(f"{name}: the weights do not fit the network (missing {missing[:3]}, unexpected "
                             f"{extra[:3]})")
    bad = [k for k, t in state.items() if tuple(t.shape) != tuple(own[k].shape)]
    if bad:
        raise ModelFileError(f"{name}: shape mismatch for {bad[:3]} ({tuple(state[bad[0]].shape)} in the file, "
                             f"{tuple(own[bad[0]].shape)} in the network)")
    cast = [k for k, t in state.items() if t.dtype != own[k].dtype]
    if cast:
        raise ModelFileError(f"{name}: dtype mismatch for {cast[:3]} ({state[cast[0]].dtype} in the file, "
                             f"{own[cast[0]].dtype} in the network)")


# ---- the folder -------------------------------------------------------------------------------------------------


def _json_name(kind: str) -> str:
    return f"{kind}.json"


def write(folder: str | os.PathLike, body: dict, kind: str = "model") -> Path:
    """Write `body` (plain values, registered records and networks) as `<kind>.json` + `weights.safetensors` in
    `folder`, atomically: readers see the old folder or the whole new one."""
    from safetensors.torch import save_file

    folder = Path(folder)
    w = _Writer()
    doc = {"format": FORMAT, "kind": kind, "body": w.encode(body)}
    text = json.dumps(doc, indent=1, allow_nan=False) + "\n"
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    try:
        save_file(w.tensors, str(tmp / WEIGHTS), metadata={"format": str(FORMAT), "kind": kind})
        (tmp / _json_name(kind)).write_text(text)
        _swap(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def _swap(new: Path, folder: Path) -> None:
    """Put folder `new` where `folder` is (an older folder, or a file of an older format, goes). Another process
    writing the same folder at the same time (each process of a data-parallel fit) puts its whole folder there
    between the two moves; that one goes too, and the last writer's folder stays."""
    for _ in range(100):
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.old")
        if folder.is_dir():
            with contextlib.suppress(FileNotFoundError):  # the other writer moved it away first
                os.replace(folder, old)
        try:
            os.replace(new, folder)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        finally:
            shutil.rmtree(old, ignore_errors=True)
    raise ModelFileError(f"{folder}: another process kept writing this folder; nothing was replaced")


def read(folder: str | os.PathLike, kind: str = "model") -> dict:
    """The body `write` stored in `folder`; `ModelFileError` naming the folder and the problem otherwise."""
    folder = Path(folder)
    try:
        return _read(folder, kind)
    except ModelFileError as e:
        raise ModelFileError(f"{folder.name}: {e}") from None


def _read(folder: Path, kind: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if folder.is_file():
        raise ModelFileError("a file of an older cmrlib format (a pickle), which is never opened: "
                             "run the notebook that makes it again")
    meta = folder / _json_name(kind)
    if not folder.is_dir() or not meta.is_file():
        raise ModelFileError(f"no {_json_name(kind)} here")
    if meta.stat().st_size > MAX_JSON_BYTES:
        raise ModelFileError(f"{meta.name} is {meta.stat().st_size / 2**20:.0f} MiB: too large to be a model's "
                             f"settings (at most {MAX_JSON_BYTES // 2**20} MiB)")
    from .runfiles import RunFileError, loads, read_bytes

    try:  # a regular file (never a FIFO), each object's keys once: a repeated key would silently win
        doc = loads(read_bytes(folder, meta, MAX_JSON_BYTES))
    except RunFileError as e:
        raise ModelFileError(str(e)) from None
    except (ValueError, RecursionError) as e:
        raise ModelFileError(f"{meta.name} is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind or "body" not in doc:
        raise ModelFileError(f"{meta.name} is not a cmrlib {kind} file")
    if doc.get("format") != FORMAT:
        raise ModelFileError(f"{meta.name} has format {str(doc.get('format'))[:20]}; this cmrlib reads format {FORMAT}")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelFileError(f"no {WEIGHTS} beside {meta.name}")
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"{WEIGHTS} is damaged ({str(e)[:120]})") from None
    r = _Reader(tensors)
    try:
        body = r.decode(doc["body"])
    except RecursionError:
        raise ModelFileError(f"{meta.name} is nested too deeply") from None
    except (KeyError, TypeError, AttributeError) as e:
        raise ModelFileError(f"{meta.name} is malformed ({type(e).__name__}: {str(e)[:80]})") from None
    extra = sorted(set(tensors) - r.used)
    if extra:
        raise ModelFileError(f"{WEIGHTS} holds {len(extra)} tensor(s) the JSON does not use")
    if not isinstance(body, dict):
        raise ModelFileError(f"{meta.name}: its body is not a mapping")
    return body


def save(folder: str | os.PathLike, model: Any, **meta: Any) -> Path:
    """One model (a network, or a record holding networks) and what made it (`meta`: settings, a summary)."""
    return write(folder, dict(model=model, meta=meta))


def load(folder: str | os.PathLike) -> tuple[Any, dict]:
    """(model in eval mode, its meta) from `save`."""
    body = read(folder)
    if set(body) != {"model", "meta"} or not isinstance(body["meta"], dict):
        raise ModelFileError(f"{Path(folder).name}: not a saved model")
    return body["model"], body["meta"]


def fingerprint(value: Any) -> str:
    """A short hash of a value as a model file would store it (its JSON and every tensor's bytes)."""
    import torch

    w = _Writer()
    h = hashlib.sha256(json.dumps(w.encode(value), sort_keys=True).encode())
    for k, t in w.tensors.items():
        h.update(k.encode() + str(t.dtype).encode() + t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]
