"""The notebooks' shared layer: folders from the project root, seeding, atomic tables, timings, targets; and
pretrained weights that are read from the local cache only."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib import results
from cmrlib.models import unet11
from cmrlib.models.regress import point_regressor
from cmrlib.models.weights import WeightsUnavailable


def test_relative_folders_start_at_the_project_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as a kernel started in notebooks/ would be
    assert results.project_path("runs/x") == results.ROOT / "runs" / "x"
    assert results.project_path(tmp_path / "abs") == tmp_path / "abs"


def test_setup_seeds_threads_and_folders(tmp_path, monkeypatch):
    for name in results.THREAD_VARIABLES:  # setup sets them for this process: put back as they were after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    threads = torch.get_num_threads()
    try:
        nb = results.setup("07", tmp_path / "run", tmp_path / "figs", seed=3, threads=1)
        a = np.random.rand(3), torch.rand(3)
        results.setup("07", tmp_path / "run", tmp_path / "figs", seed=3)
        b = np.random.rand(3), torch.rand(3)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert nb.out == tmp_path / "run" / "07" and nb.out.is_dir() and (tmp_path / "figs").is_dir()
    with pytest.raises(FileNotFoundError, match="run notebook 00"):
        nb.cohort()


def test_a_notebooks_blas_threads_are_its_own_whatever_its_kernel_inherited(tmp_path):
    """A kernel started from a process a Dask nanny left OMP/OPENBLAS/MKL_NUM_THREADS=1 in, which starts a nanny of
    its own after setup: a notebook set up with two threads keeps every BLAS and OpenMP pool on two."""
    code = ("import json, os, sys; from cmrlib import results; "
            "results.setup('07', sys.argv[1], sys.argv[1], 0, threads=2); "
            f"os.environ.update({{name: '1' for name in {results.THREAD_VARIABLES!r}}}); "
            "import scipy.linalg, sklearn.decomposition, torch; from threadpoolctl import threadpool_info; "
            "print(json.dumps([[p['internal_api'], p['num_threads']] for p in threadpool_info()] + "
            "[['torch', torch.get_num_threads()]]))")
    leaked = {**os.environ, **{name: "1" for name in results.THREAD_VARIABLES}}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=leaked, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    pools = json.loads(done.stdout.strip().splitlines()[-1])
    assert "openblas" in {name for name, _ in pools} and {n for _, n in pools} == {2}, pools


def test_tables_timings_and_targets(tmp_path):
    nb = results.setup("01", tmp_path, tmp_path / "f", seed=0)
    nb.table(pd.DataFrame({"a": [1, 2]}), "scores")
    assert pd.read_csv(nb.out / "scores.csv")["a"].tolist() == [1, 2] and not list(nb.out.glob(".*"))
    with nb.timer("step"):
        pass
    assert nb.save_timings().index.tolist() == ["step"]
    assert pd.read_csv(nb.out / "timings.csv")["step"].tolist() == ["step"]
    t = nb.targets([("dice", 0.94, ">=", 0.93), ("bias", -0.2, "within", 0.1), ("sd", np.nan, "<=", 1.0),
                    ("gain", -0.1, "<", 0.0)])
    assert t["met"].tolist() == [True, False, False, True]
    assert pd.read_csv(nb.out / "targets.csv").columns.tolist() == results.TARGET_COLUMNS
    with pytest.raises(ValueError, match="goal"):
        results.meets(1.0, "about", 1.0)


def test_met_is_one_rule_and_an_interval_must_clear_the_target_whole():
    """A difference below 0 whose CI crosses 0 is not met; the same row with its CI below 0 is; a row without an
    interval is judged on its estimate; the report recomputes `met` from the row whatever the file says."""
    T = results.Target
    rows = [T("gain", -0.3, "<", 0.0, low=-0.8, high=0.2, n=15, test="paired bootstrap"),
            T("gain", -0.3, "<", 0.0, low=-0.5, high=-0.1, n=15, test="paired bootstrap"),
            T("AUC", 0.9, ">=", 0.85, low=0.8, high=0.95, n=59, test="patient bootstrap"),
            T("bias", 0.05, "within", 0.1, low=-0.05, high=0.12), ("dice", 0.94, ">=", 0.93)]
    assert results.targets_frame(rows)["met"].tolist() == [False, True, False, False, True]
    assert [r.met for r in rows[:4]] == [False, True, False, False]
    tampered = results.targets_frame(rows).assign(met=True)
    assert results.recomputed(tampered)["met"].tolist() == [False, True, False, False, True]
    old = pd.DataFrame({"figure": ["x"], "value": [1.0], "goal": [">="], "target": [2.0], "met": [True]})
    assert results.recomputed(old)[["met", "test"]].values.tolist() == [[False, results.ESTIMATE]]


def test_pretrained_weights_come_from_the_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for build in (lambda: unet11(width=1.0, pretrained=True), lambda: point_regressor("resnet18", pretrained=True)):
        with pytest.raises(WeightsUnavailable, match="not available offline") as e:
            build()
        assert str(tmp_path / "hub" / "checkpoints") in str(e.value)


def test_compare_runs_reports_what_differs_but_timings(tmp_path):
    for run, v in (("a", 1.0), ("b", 1.0)):
        nb = results.setup("02", tmp_path / run, tmp_path / "f", seed=0)
        nb.table(pd.DataFrame({"aFD": [0.3, v], "sec": np.random.rand(2)}), "afd")
        nb.table(pd.DataFrame({"x": [1]}), "timings")
    assert results.compare_runs(tmp_path / "a", tmp_path / "b").empty
    results.setup("02", tmp_path / "b", tmp_path / "f", seed=0).table(pd.DataFrame({"aFD": [0.3, 2.0], "sec": [0, 0]}),
                                                                        "afd")
    results.setup("03", tmp_path / "a", tmp_path / "f", seed=0).table(pd.DataFrame({"y": [1]}), "extra")
    d = results.compare_runs(tmp_path / "a", tmp_path / "b")
    assert d.to_dict("records") == [dict(table="03/extra.csv", differs="only in a"),
                                    dict(table="02/afd.csv", differs="aFD")]
