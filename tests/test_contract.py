"""The run-folder contract: the analysis (cmrlib.analysis, notebooks 07-09) reads of a notebook's folder only
what `cmrlib.analysis.RUN_FILES` declares that notebook hands over."""
from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from cmrlib.analysis import EVERY, RUN_FILES

ROOT = Path(__file__).resolve().parents[1]
NAMED = [re.compile(r"""["'](\d\d|\[0-9\]\[0-9\])/([\w.*{}\[\]-]+)["']"""),  # "05/table_{name}.csv", "[0-9][0-9]/x"
         re.compile(r"""/ ["'](\d\d)["'] / ["']([\w.*{}-]+)["']"""),  # run_dir / "03" / "clinical_subjects.csv"
         re.compile(r"""/ ["'](\d\d)["']\)\.glob\(["']([^"']+)["']\)""")]  # (run_dir / "06").glob("x_*.csv")


def named_files(text: str) -> set[tuple[str, str]]:
    """(notebook, file) pairs a source names in a run folder; an f-string's {field} becomes a wildcard."""
    return {(nn, re.sub(r"\{[^}]*\}", "*", name)) for rx in NAMED for nn, name in rx.findall(text)}


def allowed(nn: str, name: str) -> bool:
    """Whether the contract lets the analysis read `name` of notebook `nn` (any notebook for a glob)."""
    declared = EVERY + (RUN_FILES.get(nn, ()) if nn[0].isdigit() else ())
    return any(name == d or fnmatch.fnmatch(name, d) or fnmatch.fnmatch(d, name) for d in declared)


def analysis_sources() -> dict[str, str]:
    out = {str(p.relative_to(ROOT)): p.read_text() for p in (ROOT / "cmrlib" / "analysis").glob("*.py")}
    for nb in ("07", "08", "09"):
        (path,) = (ROOT / "notebooks").glob(f"{nb}_*.ipynb")
        cells = json.loads(path.read_text())["cells"]
        out[path.name] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return out


def test_the_analysis_names_only_files_of_the_contract():
    outside = {src: sorted(f"{nn}/{n}" for nn, n in named_files(text) if not allowed(nn, n))
               for src, text in analysis_sources().items()}
    assert not {k: v for k, v in outside.items() if v}, f"files outside cmrlib.analysis.RUN_FILES: {outside}"
    assert len({f for text in analysis_sources().values() for f in named_files(text)}) >= 11  # the check sees them


def test_the_check_sees_a_file_outside_the_contract():
    text = ('pd.read_csv(run / "04" / "patches_cohort.npz"); _read(run, f"05/fold_{k}.csv"); '
            '_read(run, "02/afd_table.csv")')
    found = named_files(text)
    assert found == {("04", "patches_cohort.npz"), ("05", "fold_*.csv"), ("02", "afd_table.csv")}
    assert [allowed(*f) for f in sorted(found)] == [True, False, False]
