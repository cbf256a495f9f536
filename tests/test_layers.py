"""The package's layering, read from its import statements: a module never imports one from a layer above it.

Layers, bottom to top: records, conventions, the run schedule, the Dask helpers and the one "skipped" error -> the
cohort store -> data, models,
measurements, statistics, figures, readers and the phantom -> the shared learning, data-parallel training, results
Predictor and Study protocols and the long measures shape -> the methods -> the analysis across methods and of one patient -> the runner, `cmrlib fit`
and CLI. Inside the methods layer, a method uses another only through the Predictor protocol.
A new module must be placed in LAYERS, so the shape stays a decision, not an accident.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from cmrlib.predictor import METHODS

PKG = Path(__file__).resolve().parent.parent / "cmrlib"
LAYERS = [
    {"labels", "record", "utils", "dask_tasks", "params", "modelfile", "schedule", "skipped", "runfiles"},
    {"store"},
    {"transforms", "models", "measure", "stats", "plots", "data", "io", "phantom", "tables", "plausible"},
    {"results", "learn", "distributed", "predictor", "study", "longform"},
    {"methods"},
    {"analysis", "analyse", "analyse_batch", "validate"},
    {"runner", "fit", "cli", "__main__", "__init__", "profiles"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def top(module: Path) -> str:
    """The first-level name of a module inside cmrlib (`cmrlib/io/dicom.py` -> 'io')."""
    rel = module.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported(module: Path) -> set[str]:
    """First-level cmrlib names a module imports (relative or absolute, at any depth in the file)."""
    pkg_parts = module.relative_to(PKG).parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg_parts[: len(pkg_parts) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "cmrlib":
                parts = node.module.split(".")[1:]
                names = [parts[0]] if parts else [a.name for a in node.names]
            else:
                continue
            out.update(names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("cmrlib."))
    return out


MODULES = sorted(PKG.rglob("*.py"))


def test_every_module_has_a_layer():
    assert sorted({top(m) for m in MODULES} - set(RANK)) == []


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PKG)))
def test_no_import_from_a_layer_above(module):
    me = RANK[top(module)]
    above = {n: RANK[n] for n in imported(module) if n in RANK and RANK[n] > me}
    assert not above, f"{module.relative_to(PKG)} (layer {me}) imports {above} from above"


def _method_imports(path: Path) -> set[str]:
    """The other method packages a module of cmrlib/methods/<m>/ imports."""
    own = path.parent.name
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 2:  # from ..x import y / from .. import x
                names = [mod.split(".")[0]] if mod else [a.name for a in node.names]
            elif mod.startswith("cmrlib.methods."):
                names = [mod.split(".")[2]]
            else:
                continue
            found |= {n for n in names if n in METHODS and n != own}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("cmrlib.methods.")} - {own}
    return found


def test_methods_use_each_other_only_through_predictors():
    offenders = {str(p.relative_to(PKG)): sorted(found) for p in (PKG / "methods").rglob("*.py")
                 if (found := _method_imports(p))}
    assert not offenders, f"these modules import another method instead of loading its Predictor: {offenders}"


def test_the_layering_check_sees_an_import_of_another_method(tmp_path):
    mod = tmp_path / "cussp" / "x.py"
    mod.parent.mkdir()
    mod.write_text("from ..segmentation import predict\nfrom .. import edes\nimport cmrlib.methods.mvnet.data\n")
    assert _method_imports(mod) == {"segmentation", "edes", "mvnet"}


def named_methods(source: str) -> set[str]:
    """The methods a module outside the methods names: as a string, or by importing a method's package."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and node.value in METHODS:
            found.add(node.value)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            dotted = [getattr(node, "module", None) or ""] + [a.name for a in node.names]
            found |= {part for d in dotted for part in d.split(".") if part in METHODS}
    return found


ONE_LIST = PKG / "predictor.py"  # METHODS, and SEGMENTER: the method whose Predictor others use to find the heart


def test_outside_the_methods_only_the_one_list_names_a_method():
    """A new method touches its package, its notebook and the profiles: the library beside them never names one."""
    offenders = {str(p.relative_to(PKG)): sorted(found) for p in MODULES
                 if "methods" not in p.relative_to(PKG).parts and p != ONE_LIST
                 and (found := named_methods(p.read_text()))}
    assert not offenders, f"these modules name a method outside cmrlib/methods/ and {ONE_LIST.name}: {offenders}"


def test_the_one_list_check_sees_a_method_named_or_imported():
    assert named_methods("x = 'cussp'\nfrom .methods.heartmae import view_kind\nimport cmrlib.methods.edes\n") == \
        {"cussp", "heartmae", "edes"}
    assert named_methods("segmenter = 'the segmentation model'\n") == set()
