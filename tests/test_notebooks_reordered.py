"""Notebooks 01-09 run again on the session's smoke run with their steps in another order: each step asks for what
it needs by name, so no table depends on the order its cells ran in."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cmrlib import runner

pytestmark = pytest.mark.slow  # the last file `make test` hands out: the smoke run is finished by then


STEPS_FROM = 1  # code cells up to and including the first after the parameters cell (the Study) run first


def reordered(folder: Path, seed: int = 0) -> Path:
    """Every notebook with its steps (the code cells after the one that makes the Study) in another order: reversed
    in the odd-numbered notebooks (each summary step first), shuffled in the even-numbered ones; markdown cells left
    out."""
    import random

    folder.mkdir(parents=True, exist_ok=True)
    for nb in runner.discover():
        data = json.loads(nb.read_text())
        code = [c for c in data["cells"] if c["cell_type"] == "code"]
        first = next(i for i, c in enumerate(code) if "parameters" in c.get("metadata", {}).get("tags", []))
        head, steps = code[: first + 1 + STEPS_FROM], code[first + 1 + STEPS_FROM:]
        steps = steps[::-1] if int(nb.name[:2]) % 2 else random.Random(f"{seed}-{nb.name}").sample(steps, len(steps))
        data["cells"] = head + steps
        (folder / nb.name).write_text(json.dumps(data))
    return folder


def test_the_reordering_moves_every_notebooks_steps(tmp_path):
    """Each notebook's steps leave their order (reversed or shuffled), with the parameters and the Study first."""
    moved = reordered(tmp_path)
    for nb in runner.discover():
        code = lambda d: [c["source"] for c in d["cells"] if c["cell_type"] == "code"]  # noqa: E731
        before, after = code(json.loads(nb.read_text())), code(json.loads((moved / nb.name).read_text()))
        assert sorted(map(str, before)) == sorted(map(str, after)) and before[:2] == after[:2]
        assert len(before) <= 3 or before != after, nb.name


WITH_MODELS = ("calibration_", "pretraining_history_")  # tables written as their models are trained: kept with them


def test_any_cell_can_run_first(smoke_shared, tmp_path):
    """Notebooks 01-09 with their steps reordered (`reordered`), on a copy of the smoke run without its tables and
    headline lists (each Study asks for what it needs by name, reusing the models and caches the run holds): every
    table, and every notebook's list of headline tables, as in order."""
    from cmrlib.results import TIMING_COLUMNS, compare_runs

    out, record = smoke_shared
    copy = tmp_path / "run"
    shutil.copytree(out, copy, symlinks=True, ignore=shutil.ignore_patterns("notebooks", "figures"))
    for nn in (f"0{k}" for k in range(1, 10)):  # no table can pass by being left over from the in-order run
        for f in [*(copy / nn).glob("*.csv"), *(copy / nn).glob("headlines.json")]:
            if not f.name.startswith(WITH_MODELS):
                f.unlink()
    plan = runner.plan("smoke", [f"0{k}" for k in range(1, 10)], None, copy, tmp_path / "figures",
                       notebooks=reordered(tmp_path / "notebooks"))
    try:
        runner.execute(plan, log=lambda *_: None, free=record["cores"]["free_at_start"])  # the run's own threads
    except runner.NotebookFailed as e:
        pytest.fail(str(e))
    differ = compare_runs(out, copy, ignore=(*TIMING_COLUMNS, "reused"))  # the copy reuses what the run trained
    assert differ.empty, differ.to_string()
