"""The papermill runner: planning errors before anything runs, run records, failure reporting."""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

import cmrlib.utils
from cmrlib import cli, runner
from cmrlib.schedule import budget_by_waves

STANDARD = ("profile", "seed", "run_dir", "figures_dir", "data_dir")
ANALYSIS = ("07", "08", "09")  # read the run folder only: no real-data root of their own


def make_nb(path: Path, params: str, body: str) -> Path:
    """A tiny notebook with a tagged parameters cell."""
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture
def prof(tmp_path):
    """A profile of our own for the tiny notebooks (shipped profiles name the real notebooks' parameters)."""
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump({"common": {"seed": 0}, "00": {"n": 1}}))
    return str(p)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "nbs"
    d.mkdir()
    make_nb(d / "00_first.ipynb", "seed = 0\nrun_dir = 'x'\nn = 1\n",
            "from pathlib import Path\nPath(run_dir, 'first.txt').write_text(str(n * 2))")
    make_nb(d / "01_second.ipynb", "seed = 0\nrun_dir = 'x'\nk = 'a'\n",
            "from pathlib import Path\nPath(run_dir, 'second.txt').write_text(Path(run_dir, 'first.txt').read_text() + k)")
    return d


def test_unknown_profile_is_one_line_error(capsys):
    assert cli.main(["run", "--profile", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nosuch" in err and len(err.splitlines()) == 1


def test_abbreviated_option_is_rejected_not_guessed():
    """'--p k=v' once parsed silently as '--profile k=v'."""
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["run", "--p", "seed=1"])
    assert cli.parser().parse_args(["run", "-p", "seed=1"]).p == ["seed=1"]


def test_unknown_parameter_named_before_running(nbdir, prof, tmp_path):
    with pytest.raises(runner.RunError, match="bogus"):
        runner.plan(prof, overrides={"bogus": 1}, out=tmp_path / "run", notebooks=nbdir)
    assert not (tmp_path / "run").exists()


def test_overrides_are_typed_and_routed_to_declaring_notebooks(nbdir, prof, tmp_path):
    p = runner.plan(prof, overrides=runner.parse_overrides(["n=3", "k=zz"]), out=tmp_path, notebooks=nbdir)
    (nb0, p0), (nb1, p1) = p.steps
    assert p0["n"] == 3 and "k" not in p0 and p1["k"] == "zz" and "n" not in p1
    assert p0["run_dir"] == str(tmp_path.resolve()) and p0["seed"] == 0


def test_profile_sections_must_name_declared_parameters(nbdir, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"01": {"epochs": 3}}))
    with pytest.raises(runner.RunError, match=r"section '01' sets \['epochs'\]"):
        runner.plan(str(bad), out=tmp_path, notebooks=nbdir)
    with pytest.raises(runner.RunError, match="not found"):
        runner.plan(str(tmp_path / "none.yaml"), out=tmp_path, notebooks=nbdir)


def test_bad_override_syntax():
    from cmrlib.params import ParamError

    with pytest.raises(ParamError, match="key=value"):
        runner.parse_overrides(["novalue"])
    with pytest.raises(ParamError, match="not a Python name"):
        runner.parse_overrides(["a b=1"])


def test_only_selects_and_rejects_missing(nbdir, prof, tmp_path):
    assert [nb.name for nb, _ in runner.plan(prof, only=["1"], out=tmp_path, notebooks=nbdir).steps] == ["01_second.ipynb"]
    with pytest.raises(runner.RunError, match="07"):
        runner.plan(prof, only=["07"], out=tmp_path, notebooks=nbdir)


def test_run_writes_outputs_and_record(nbdir, prof, tmp_path):
    out = tmp_path / "run"
    path = runner.execute(runner.plan(prof, overrides={"n": 21}, out=out, notebooks=nbdir), log=lambda *_: None)
    rec = json.loads(path.read_text())
    assert (out / "second.txt").read_text() == "42a"
    assert rec["status"] == "ok" and rec["profile"] == "tiny" and rec["seeds"] == [0]
    assert [r["status"] for r in rec["notebooks"]] == ["ok", "ok"]
    assert all(r["wall_s"] >= 0 for r in rec["notebooks"]) and rec["versions"]["torch"]
    assert isinstance(rec["cpu_bf16"], bool)  # which arithmetic `bf16: true` gave on this machine
    assert (out / "notebooks" / "00_first.ipynb").exists()


def test_run_json_names_the_commit_the_run_started_at(nbdir, prof, tmp_path, monkeypatch):
    """A commit made while a run goes on is not the code it ran: run.json keeps the commit read as it started
    (each notebook's row the one read as that notebook started)."""
    commits = itertools.chain(["start", "first notebook", "second notebook"], itertools.repeat("later"))
    monkeypatch.setattr(runner, "git_commit", lambda *_: next(commits))
    path = runner.execute(runner.plan(prof, out=tmp_path / "run", notebooks=nbdir), log=lambda *_: None)
    rec = json.loads(path.read_text())
    assert rec["git_commit"] == "start"
    assert [r["git_commit"] for r in rec["notebooks"]] == ["first notebook", "second notebook"]


def test_a_copied_run_reruns_into_its_own_figure_folder(nbdir, prof, tmp_path):
    """A run folder copied elsewhere names its own figure folder on a rerun, never the one it was copied from; a
    figure folder the user chose outside the run stays theirs."""
    import shutil

    rec = json.loads(runner.execute(runner.plan(prof, out=tmp_path / "run", notebooks=nbdir),
                                    log=lambda *_: None).read_text())
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    assert runner.recorded_figures(tmp_path / "copy", rec) == str(tmp_path / "copy" / "figures")
    assert runner.recorded_figures(tmp_path / "copy", dict(rec, figures=str(tmp_path / "mine"))) == \
        str(tmp_path / "mine")
    assert runner.recorded_figures(tmp_path / "copy", {"figures": None}) is None


def test_failure_names_notebook_and_cell_and_keeps_partial(nbdir, prof, tmp_path):
    make_nb(nbdir / "02_broken.ipynb", "seed = 0\nrun_dir = 'x'\n", "raise ValueError('boom')")
    out = tmp_path / "run"
    with pytest.raises(runner.NotebookFailed, match=r"02_broken.ipynb failed in cell \d+: ValueError: boom"):
        runner.execute(runner.plan(prof, out=out, notebooks=nbdir), log=lambda *_: None)
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "failed" and rec["notebooks"][-1]["status"] == "failed"
    assert (out / "notebooks" / "02_broken.ipynb").exists()


def test_budgets_reach_the_notebooks_that_declare_them_the_log_and_the_record(nbdir, tmp_path):
    make_nb(nbdir / "00_first.ipynb", "seed = 0\nrun_dir = 'x'\nbudget_min = None\n",
            "from pathlib import Path\nPath(run_dir, 'budget.txt').write_text(repr(budget_min))\n"
            "Path(run_dir, 'first.txt').write_text('1')")
    prof = tmp_path / "timed.yaml"
    prof.write_text(yaml.safe_dump({"budgets": {"00": 0.5, "01": 1e-9}, "common": {"seed": 0}}))
    out, lines = tmp_path / "run", []
    path = runner.execute(runner.plan(str(prof), out=out, notebooks=nbdir), log=lines.append, free=os.cpu_count())
    assert (out / "budget.txt").read_text() == "0.5"  # 01 does not declare it: only the runner knows its budget
    assert [r["budget_min"] for r in json.loads(path.read_text())["notebooks"]] == [0.5, 1e-9]
    assert "budget 0.5 min" in lines[0] and "budget 0.5 min)" in lines[1] and "OVER" not in lines[1]
    assert "OVER BUDGET" in lines[3] and "run so far" in lines[3]


def test_a_run_says_first_when_its_bf16_notebooks_train_in_float32(nbdir, tmp_path, monkeypatch):
    make_nb(nbdir / "00_first.ipynb", "seed = 0\nrun_dir = 'x'\nbf16 = False\n", "pass")
    prof = tmp_path / "bf16.yaml"
    prof.write_text(yaml.safe_dump({"common": {"seed": 0}, "00": {"bf16": True}}))
    p = runner.plan(str(prof), out=tmp_path / "run", notebooks=nbdir)
    monkeypatch.setattr(cmrlib.utils, "cpu_bf16", lambda: True)
    assert runner.float32_note(p) is None
    monkeypatch.setattr(cmrlib.utils, "cpu_bf16", lambda: False)
    assert "notebooks 00 (`bf16: true`) train in float32" in runner.float32_note(p)
    p.steps[0][1]["bf16"] = False
    assert runner.float32_note(p) is None


@pytest.mark.parametrize("budgets, match", [({"1": 3}, "not a notebook number"), ({"00": 0}, "above 0"),
                                            ({"00": True}, "above 0"), ({"00": "ten"}, "above 0"),
                                            ({"07": 3}, "names no notebook")])
def test_a_budget_is_minutes_for_a_notebook_that_exists(nbdir, tmp_path, budgets, match):
    prof = tmp_path / "bad.yaml"
    prof.write_text(yaml.safe_dump({"budgets": budgets}))
    with pytest.raises(runner.RunError, match=match):
        runner.plan(str(prof), out=tmp_path / "run", notebooks=nbdir)


def test_the_budget_is_the_runs_own_never_an_override(nbdir, prof, tmp_path):
    with pytest.raises(runner.RunError, match="set by the run itself"):
        runner.plan(prof, overrides={"budget_min": 100}, out=tmp_path, notebooks=nbdir)


def test_the_default_run_fits_170_minutes():
    budgets = runner.load_profile("default")[runner.BUDGETS]
    assert sorted(budgets) == [nb.name[:2] for nb in runner.discover()] and runner.run_budget("default") <= 170


@pytest.mark.parametrize("profile", runner.profiles())
def test_profiles_only_set_declared_parameters(profile, tmp_path):
    """Every key of every shipped profile is a parameter of its notebook (planning checks it)."""
    if not runner.discover():
        pytest.skip("no notebooks yet")
    p = runner.plan(profile, out=tmp_path)
    assert all("seed" in params for _, params in p.steps)


def test_repo_notebooks_are_clean_and_parameterised():
    nbs = runner.discover()
    assert nbs, "notebooks/ has no numbered notebooks"
    for nb in nbs:
        node = nbformat.read(nb, as_version=4)
        code = [c for c in node.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), f"{nb.name} has outputs"
        assert "parameters" in code[0].metadata.get("tags", []), f"{nb.name}: first code cell is not 'parameters'"
        standard = set(STANDARD) - ({"data_dir"} if nb.name[:2] in ANALYSIS else set())
        missing = standard - set(runner.declared(nb))
        assert not missing, f"{nb.name} lacks standard parameters {missing}"


def test_environment_yml_installs_from_the_lock():
    """conda only supplies python and pip; every package comes through pip at its locked version, then cmrlib."""
    root = Path(runner.ROOT)
    env = yaml.safe_load((root / "environment.yml").read_text())
    deps = env["dependencies"]
    plain = [d for d in deps if isinstance(d, str)]
    pip = [d for d in deps if isinstance(d, dict)][0]["pip"]
    assert all(d.split("=")[0] in ("python", "pip") for d in plain)
    assert any(d.startswith("python=3.11") for d in plain)
    assert pip == ["-r requirements.lock", '-e ".[dev]"']


def test_a_notebook_saved_by_jupyterlab_strips_back_to_the_committed_file(tmp_path):
    """What `make install`'s git filter does on `git add`: outputs, execution counts and the Python version JupyterLab
    writes are removed, leaving the committed bytes (so running and saving a notebook changes nothing in git)."""
    import re
    import subprocess
    import sys

    keys = re.search(r"^NB_STRIP_KEYS := (.+)$", (runner.ROOT / "Makefile").read_text(), re.M).group(1)
    for nb in runner.discover():
        node = nbformat.reads(nb.read_text(), as_version=4)
        node.metadata["language_info"] = {"name": "python", "version": "3.11.99", "mimetype": "text/x-python"}
        for c in node.cells:
            if c.cell_type == "code":
                c.execution_count = 7
                c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
        nbformat.write(node, tmp_path / nb.name)
    saved = [str(tmp_path / nb.name) for nb in runner.discover()]
    subprocess.run([sys.executable, "-m", "nbstripout", "--extra-keys", keys, *saved], check=True)  # in place
    changed = [nb.name for nb in runner.discover() if (tmp_path / nb.name).read_text() != nb.read_text()]
    assert not changed, f"the committed form is not what the filter leaves: {changed}"


def test_a_runs_own_figures_and_report_leave_its_commit_clean(tmp_path):
    """`make reproduce` writes figures/ and docs/results.md into the repository: its later notebooks still name a
    clean commit, while a changed source file marks it dirty."""
    from cmrlib.utils import RUN_OUTPUTS, git_commit
    git = lambda *a: subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *a], cwd=tmp_path, check=True)
    files = [tmp_path / p / "x.png" if not p.endswith(".md") else tmp_path / p for p in RUN_OUTPUTS]
    for f in [*files, tmp_path / "src" / "a.py"]:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("a")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "start")
    for f in files:
        f.write_text("b")
    assert not git_commit(tmp_path / "src").endswith("-dirty")
    (tmp_path / "src" / "a.py").write_text("b")
    assert git_commit(tmp_path).endswith("-dirty")
    recipe = (Path(__file__).parents[1] / "Makefile").read_text().split("\nreproduce:")[1].split("\n\n")[0]
    assert set(re.findall(r"--(?:figures|readme) ([^\s;]+)", recipe)) == set(RUN_OUTPUTS)  # what it writes


RENDEZVOUS = ("import time\nfrom pathlib import Path\nPath(run_dir, '{me}.txt').write_text('here')\n"
              "t0 = time.time()\nwhile not Path(run_dir, '{other}.txt').exists():\n"
              "    assert time.time() - t0 < 120, 'the other notebook never ran beside this one'\n    time.sleep(0.1)\n")


def test_a_together_group_runs_side_by_side_and_the_record_names_it(nbdir, tmp_path):
    """Each notebook of the group waits for a file the other writes: run one after the other, the first would wait
    in vain."""
    make_nb(nbdir / "01_second.ipynb", "seed = 0\nrun_dir = 'x'\n", RENDEZVOUS.format(me="b", other="c"))
    make_nb(nbdir / "02_third.ipynb", "seed = 0\nrun_dir = 'x'\n", RENDEZVOUS.format(me="c", other="b"))
    prof = tmp_path / "pair.yaml"
    prof.write_text(yaml.safe_dump({"together": [["01", "02"]], "budgets": {"00": 1, "01": 2, "02": 3}}))
    out, lines = tmp_path / "run", []
    p = runner.plan(str(prof), out=out, notebooks=nbdir)
    assert p.waves == [[0], [1, 2]]
    rec = json.loads(runner.execute(p, log=lines.append).read_text())
    assert rec["status"] == "ok" and [r.get("together") for r in rec["notebooks"]] == [
        None, ["02_third.ipynb"], ["01_second.ipynb"]]
    assert runner.run_budget(str(prof)) == 4  # 00's minute, then the pair's longer budget
    from cmrlib.analysis.report import report
    assert "(budget 4 min)" in report(out)


def test_a_failure_in_a_group_lets_the_other_finish_and_stops_the_run(nbdir, tmp_path):
    make_nb(nbdir / "01_second.ipynb", "seed = 0\nrun_dir = 'x'\n", "raise ValueError('boom')")
    make_nb(nbdir / "02_third.ipynb", "seed = 0\nrun_dir = 'x'\n",
            "import time\nfrom pathlib import Path\ntime.sleep(2)\nPath(run_dir, 'third.txt').write_text('done')")
    make_nb(nbdir / "03_fourth.ipynb", "seed = 0\nrun_dir = 'x'\n", "from pathlib import Path\n"
            "Path(run_dir, 'fourth.txt').write_text('ran')")
    prof = tmp_path / "pair.yaml"
    prof.write_text(yaml.safe_dump({"together": [["01", "02"]]}))
    out = tmp_path / "run"
    with pytest.raises(runner.NotebookFailed, match=r"01_second.ipynb failed in cell \d+: ValueError: boom"):
        runner.execute(runner.plan(str(prof), out=out, notebooks=nbdir), log=lambda *_: None)
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "failed" and [r["status"] for r in rec["notebooks"]] == ["ok", "failed", "ok"]
    assert (out / "third.txt").exists() and not (out / "fourth.txt").exists()


def test_a_group_runs_where_its_first_notebook_stands_each_on_its_share_of_the_cores(nbdir, tmp_path):
    """00 and 02 side by side, each with half the profile's threads and workers (-p keeps what it sets), then 01;
    run alone, a notebook keeps the profile's counts."""
    make_nb(nbdir / "02_third.ipynb", "seed = 0\nrun_dir = 'x'\nthreads = 1\nworkers = 1\n", "pass")
    prof = tmp_path / "pair.yaml"
    prof.write_text(yaml.safe_dump({"together": [["00", "02"]], "common": {"threads": 4, "workers": 2},
                                    "budgets": {"00": 1, "01": 2, "02": 3}}))
    p = runner.plan(str(prof), out=tmp_path / "run", notebooks=nbdir, overrides={"workers": 2})
    assert p.waves == [[0, 2], [1]] and runner.run_budget(str(prof)) == 5
    assert {k: p.steps[2][1][k] for k in runner.SHARED} == {"threads": 2, "workers": 2}
    alone = runner.plan(str(prof), only=["02"], out=tmp_path / "run", notebooks=nbdir)
    assert alone.waves == [[0]] and {k: alone.steps[0][1][k] for k in runner.SHARED} == {"threads": 4, "workers": 2}
    assert budget_by_waves({"a": 1, "b": 2, "c": 3}, [["a", "b"], ["b", "c"]]) == 5  # b counted once


@pytest.mark.parametrize("together, match", [([["00", "01"], ["01", "02"]], "notebook 01 is in two"),
                                             ([["00"]], "two or more"), ([[0, 1]], "two or more"),
                                             ("00 01", "not a list"), ([["00", "07"]], "names no notebook")])
def test_a_together_group_is_notebooks_each_in_one_group(nbdir, tmp_path, together, match):
    make_nb(nbdir / "02_third.ipynb", "seed = 0\nrun_dir = 'x'\n", "pass")
    prof = tmp_path / "bad.yaml"
    prof.write_text(yaml.safe_dump({"together": together}))
    with pytest.raises(runner.RunError, match=match):
        runner.plan(str(prof), out=tmp_path / "run", notebooks=nbdir)


def test_notebook_minutes_count_side_by_side_notebooks_once():
    from cmrlib.analysis.report import notebook_minutes
    run = {"notebooks": [{"notebook": "00_a.ipynb", "started": "2026-01-01T00:00:00+00:00", "wall_s": 60},
                         {"notebook": "01_b.ipynb", "started": "2026-01-01T00:01:00+00:00", "wall_s": 120},
                         {"notebook": "02_c.ipynb", "started": "2026-01-01T00:01:00+00:00", "wall_s": 180},
                         {"notebook": "03_d.ipynb", "started": "2026-01-02T00:00:00+00:00", "wall_s": 60}]}
    assert notebook_minutes(run) == (5.0, 7.0)  # 1, then 3 (the pair, side by side), then 1 a day later; each: 7


def test_threads_fit_the_cores_free_as_the_run_starts_and_openmp_waits_passively_when_some_are_taken(tmp_path, monkeypatch):
    """Two of four cores taken by other processes: each notebook's threads and workers at most the free cores (a
    wave of two shares them, one each), what -p sets stays as set, and run.json says so; the kernels see
    OMP_WAIT_POLICY=PASSIVE."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 4)
    d = tmp_path / "nbs"
    d.mkdir()
    for name in ("00_a", "01_b", "02_c"):
        make_nb(d / f"{name}.ipynb", "seed = 0\nrun_dir = 'x'\nthreads = 1\nworkers = 1\n",
                f"import os\nfrom pathlib import Path\nPath(run_dir, '{name}.txt').write_text("
                "f\"{threads} {workers} {os.environ.get('OMP_WAIT_POLICY')}\")")
    prof = tmp_path / "busy.yaml"
    prof.write_text(yaml.safe_dump({"common": {"seed": 0, "threads": 4, "workers": 4}, "together": [["01", "02"]]}))
    p = runner.plan(str(prof), overrides={"workers": 3}, out=tmp_path / "run", notebooks=d)
    rec = json.loads(runner.execute(p, log=lambda *_: None, free=2).read_text())
    said = {n: (tmp_path / "run" / f"{n}.txt").read_text() for n in ("00_a", "01_b", "02_c")}
    assert said == {"00_a": "2 3 PASSIVE", "01_b": "1 3 PASSIVE", "02_c": "1 3 PASSIVE"}
    assert rec["cores"]["free_at_start"] == 2 and rec["cores"]["wait_policy"] == "PASSIVE"
    assert [r["parameters"]["threads"] for r in rec["notebooks"]] == [2, 1, 1]
    assert 1 <= runner.free_cores(0.05) <= rec["cores"]["cpu"]


def test_on_an_idle_machine_openmp_keeps_its_own_wait(tmp_path, monkeypatch):
    """Every core free as the run starts: the profile's threads, and OpenMP's own wait policy (its passive wait
    slows two threads' small steps by half: bench/bench_seg_train.py); run.json records no policy."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 2)
    d = tmp_path / "nbs"
    d.mkdir()
    make_nb(d / "00_a.ipynb", "seed = 0\nrun_dir = 'x'\nthreads = 1\n",
            "import os\nfrom pathlib import Path\nPath(run_dir, 'a.txt').write_text("
            "f\"{threads} {os.environ.get('OMP_WAIT_POLICY')}\")")
    prof = tmp_path / "idle.yaml"
    prof.write_text(yaml.safe_dump({"common": {"seed": 0, "threads": 2}}))
    rec = json.loads(runner.execute(runner.plan(str(prof), out=tmp_path / "run", notebooks=d), log=lambda *_: None,
                                    free=2).read_text())
    assert (tmp_path / "run" / "a.txt").read_text() == "2 None"
    assert rec["cores"]["wait_policy"] == ""
