"""A Study's state by name: what one step makes and another uses is a named (cached) property, never an attribute
one step sets for a later cell to read, so any notebook cell can run first
(`test_notebooks_reordered.test_any_cell_can_run_first` runs them so). Read from the code: a rule as a test, with a
test of its checker."""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "cmrlib"
STUDIES = sorted(PKG.glob("methods/*/study.py")) + sorted(PKG.glob("analysis/*_study.py")) + [PKG / "study.py"]
NAMED = {"cached_property", "property"}


def handed_on(source: str) -> list[str]:
    """`Class.attribute (set in f, read in g)` for every attribute a method other than `__init__` or a property sets
    on `self` and another such method reads."""
    out = []
    for cls in (c for c in ast.parse(source).body if isinstance(c, ast.ClassDef)):
        sets, reads = {}, {}
        for fn in (m for m in cls.body if isinstance(m, ast.FunctionDef)):
            if fn.name == "__init__" or {getattr(d, "attr", getattr(d, "id", "")) for d in fn.decorator_list} & NAMED:
                continue
            for x in ast.walk(fn):
                if isinstance(x, ast.Attribute) and isinstance(x.value, ast.Name) and x.value.id == "self":
                    (sets if isinstance(x.ctx, ast.Store) else reads).setdefault(x.attr, set()).add(fn.name)
        out += [f"{cls.name}.{a} (set in {sorted(fs)}, read in {sorted(reads[a] - fs)})"
                for a, fs in sets.items() if reads.get(a, set()) - fs]
    return out


def guards(source: str) -> list[str]:
    """Cell-order props: `_..._ready()` guards and `getattr(self, name, default)` reads of what a step may have set."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("_") and node.name.endswith("_ready"):
            found.append(f"guard {node.name}")
        if (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr" and len(node.args) == 3
                and isinstance(node.args[0], ast.Name) and node.args[0].id == "self"):
            found.append(f"getattr(self, ...) with a default at line {node.lineno}")
    return found


MUTATORS = {"append", "extend", "update", "add", "setdefault", "insert", "pop", "clear"}


def filled_later(source: str) -> list[str]:
    """`Class.method: what` for every write into `self.__dict__` and every container attribute of `self` filled
    (an item set, or append/update/...) outside `__init__`: state a later cell would find, or miss."""
    out = []
    for cls in (c for c in ast.parse(source).body if isinstance(c, ast.ClassDef)):
        for fn in (m for m in cls.body if isinstance(m, ast.FunctionDef) and m.name != "__init__"):
            for x in ast.walk(fn):
                own = lambda n: isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
                if isinstance(x, ast.Subscript) and isinstance(x.ctx, ast.Store) and own(x.value):
                    out.append(f"{cls.name}.{fn.name}: self.{x.value.attr}[...] = ...")
                elif (isinstance(x, ast.Call) and isinstance(x.func, ast.Attribute) and x.func.attr in MUTATORS
                      and own(x.func.value)):
                    out.append(f"{cls.name}.{fn.name}: self.{x.func.value.attr}.{x.func.attr}(...)")
    return out


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_step_hands_state_to_another_by_attribute(path):
    source = path.read_text()
    assert not handed_on(source), handed_on(source)
    assert not guards(source), guards(source)
    assert not filled_later(source), filled_later(source)


def test_the_checker_finds_an_attribute_a_step_sets_for_another_and_the_guards():
    bad = textwrap.dedent('''
        class S:
            def __init__(self):
                self.p = 1
            def prepare(self):
                self.items = [self.p]
            def fit(self):
                return self.items
            def _cohort_ready(self):
                return getattr(self, "ready", False)
    ''')
    good = textwrap.dedent('''
        from functools import cached_property
        class S:
            @cached_property
            def items(self):
                return [1]
            def fit(self):
                return self.items
    ''')
    assert handed_on(bad) == ["S.items (set in ['prepare'], read in ['fit'])"]
    planted = textwrap.dedent('''
        class S:
            def __init__(self):
                self.seen = {}
            def fit(self):
                self.__dict__["models"] = 1
                self.seen.update(a=1)
    ''')
    assert filled_later(planted) == ["S.fit: self.__dict__[...] = ...", "S.fit: self.seen.update(...)"]
    assert not filled_later(good)
    assert guards(bad) == ["guard _cohort_ready", "getattr(self, ...) with a default at line 10"]
    assert not handed_on(good) and not guards(good)
