"""Parameter values are data, never code: the YAML that `-p key=value` and profile files are read with (null, bool,
int, float, str, list and mapping only; no tags, no aliases), the check that a value is plain data before it reaches
a notebook, and the checks of a value against the notebook's own default.

    values = load_yaml(text, where="profile my_study.yaml")    # ParamError, one line, for anything else
    check_value(name, value, default_source)                     # ParamError naming the parameter
"""
from __future__ import annotations

import ast
import math
import re
from typing import Any

import yaml

MAX_YAML_BYTES = 1 << 20  # a profile or a value larger than this is not a parameter file
PLAIN_TAGS = ("null", "bool", "int", "float", "str", "seq", "map")
from .record import VIEWS


class ParamError(ValueError):
    """A parameter value or profile that is not plain data, or does not fit its parameter: the message names it."""


class _PlainLoader(yaml.SafeLoader):
    """YAML's safe loader without its extra types (pairs, omap, set, binary, timestamp) and without aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ParamError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed")
        return super().compose_node(parent, index)

    def construct_undefined(self, node):
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise ParamError(f"line {node.start_mark.line + 1}: the tag {tag} is not allowed (plain values only: "
                         "null, true/false, numbers, strings, [lists] and {mappings})")


_PlainLoader.yaml_constructors = {f"tag:yaml.org,2002:{t}": yaml.SafeLoader.yaml_constructors[f"tag:yaml.org,2002:{t}"]
                                  for t in PLAIN_TAGS}
_PlainLoader.yaml_constructors[None] = _PlainLoader.construct_undefined
# a date written plainly stays a string (YAML would make it a timestamp)
_PlainLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:timestamp"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(text: str, where: str) -> Any:
    """The plain value a YAML text holds; ParamError naming `where` (and the line) for anything else."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise ParamError(f"{where}: larger than {MAX_YAML_BYTES >> 20} MiB")
    try:
        value = yaml.load(text, Loader=_PlainLoader)  # noqa: S506 (the loader above builds plain values only)
    except ParamError as e:
        raise ParamError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ParamError(f"{where}: {line}not valid YAML ({getattr(e, 'problem', None) or type(e).__name__})") \
            from None
    except RecursionError:
        raise ParamError(f"{where}: nested too deeply") from None
    return plain(value, where)


def plain(value: Any, where: str) -> Any:
    """`value` when it is plain data (None, bool, int, finite float, str, lists and str-keyed mappings of them)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParamError(f"{where}: {value} is not a finite number")
        return value
    if isinstance(value, list):
        return [plain(v, where) for v in value]
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ParamError(f"{where}: mapping keys must be strings, got {bad[0]!r}")
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    raise ParamError(f"{where}: a {type(value).__name__} is not a plain value")


def parse_override(item: str) -> tuple[str, Any]:
    """`key=value` -> (key, plain value)."""
    if "=" not in item:
        raise ParamError(f"parameter {item!r} is not key=value")
    key, text = (s.strip() for s in item.split("=", 1))
    if not re.fullmatch(r"[A-Za-z_]\w*", key):
        raise ParamError(f"parameter name {key!r} is not a Python name")
    return key, load_yaml(text, f"parameter {key}")


# ---------------------------------------------------------------- a value against its parameter

def _kind(v: Any) -> str:
    return ("none" if v is None else "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else
            "float" if isinstance(v, float) else "str" if isinstance(v, str) else
            "list" if isinstance(v, (list, tuple)) else "mapping" if isinstance(v, dict) else "other")


# a value of the first kind may stand where the notebook's default is of the second
FITS = {("int", "float"), ("int", "bool")}  # `true` is no count: n_subjects=true is refused
WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string", "list": "a [list]",
         "mapping": "a {mapping}"}


def _at_least(name: str) -> int | None:
    """The smallest value a count parameter may take, by its name (None: no bound)."""
    if name in ("bs", "threads", "workers") or name.endswith("_bs"):
        return 1
    if name == "n_folds":
        return 2
    if name == "seed" or name.startswith("epochs") or name.endswith(("_epochs", "_steps", "_subjects")):
        return 0
    return None


def _at_most(name: str) -> int | None:
    """The largest value a count parameter may take, by its name (None: no bound): a phantom cohort beyond what a
    disk holds, or a fold count beyond any cohort, is refused before anything is made."""
    if name == "n_subjects" or name.endswith("_subjects"):
        return 100_000
    if name == "n_folds":
        return 100
    return None


def check_value(name: str, value: Any, default_source: str | None) -> Any:
    """`value` when it fits parameter `name` (its kind that of the notebook's literal default, counts within their
    bounds, views among the canonical ones); ParamError naming the parameter otherwise. None always fits (off)."""
    value = plain(value, f"parameter {name}")
    if value is None:
        return value
    try:
        default = ast.literal_eval(default_source) if default_source is not None else None
    except (ValueError, SyntaxError):
        default = None  # an expression: nothing to compare with
    want, got = _kind(default), _kind(value)
    if want not in ("none", "other") and got != want and (got, want) not in FITS:
        raise ParamError(f"parameter {name}: expected {WORDS.get(want, want)} like its default {default_source}, "
                         f"got {value!r}")
    low = _at_least(name)
    if low is not None and got in ("int", "float") and value < low:
        raise ParamError(f"parameter {name}: must be at least {low}, got {value!r}")
    high = _at_most(name)
    if high is not None and got in ("int", "float") and value > high:
        raise ParamError(f"parameter {name}: at most {high:,}, got {value!r}")
    if name in ("views", "view"):
        bad = [v for v in (value if isinstance(value, list) else [value]) if v not in VIEWS]
        if bad:
            raise ParamError(f"parameter {name}: {bad[0]!r} is not a view; choose among {', '.join(VIEWS)}")
    return value


def merge(profile: dict, number: str, declared: dict[str, str | None], overrides: dict | None = None) -> dict:
    """The one profile merge (the runner's and `cmrlib fit`'s): the profile's common keys a notebook declares, its
    own section, then the overrides it declares, each value checked against its default (`declared`: name -> the
    default's source text)."""
    merged = {k: v for k, v in profile.get("common", {}).items() if k in declared}
    merged.update(profile.get(number, {}))
    merged.update({k: v for k, v in (overrides or {}).items() if k in declared})
    return {k: check_value(k, v, declared.get(k)) for k, v in merged.items()}
