"""Parameter values are data: hostile `-p` values and profile files are refused in one line before any notebook
runs (no tag builds an object, no alias expands, no value closes its quotes), and a value that does not fit its
parameter is named; `cmrlib fit` checks the same before loading torch."""
from __future__ import annotations

import ast
import sys
import time

import pytest

from cmrlib import cli, params, runner
from cmrlib.params import ParamError, check_value, load_yaml, parse_override

PWN = 'views=!!pairs [{\'x"+str(__import__("os").system("touch PWNED"))+"\': 1}]'


def one_line_error(capsys, argv) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr and no traceback."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cmrlib: error: ") and "Traceback" not in err, err
    return err


def test_a_tag_in_a_value_or_a_profile_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys, ["run", "--profile", "smoke", "--only", "00", "-p", PWN, "--out", "OUT"])
    assert "parameter views: line 1: the tag !!pairs is not allowed" in err
    prof = tmp_path / "my_study.yaml"
    prof.write_text('"00": {views: !!pairs [{a: 1}]}\n')
    err = one_line_error(capsys, ["run", "--profile", str(prof), "--only", "00", "--out", "OUT"])
    assert "profile" in err and "!!pairs is not allowed" in err
    for value in ("!!python/object/apply:os.system [touch PWNED]", "!!set {a, b}", "!!binary aGVsbG8=",
                  "!!timestamp 2020-01-01", "!!omap [{a: 1}]"):
        err = one_line_error(capsys, ["run", "--profile", "smoke", "--only", "00", "-p", f"seed={value}"])
        assert "parameter seed: line 1: the tag" in err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "OUT").exists()


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n")
    t0 = time.perf_counter()
    err = one_line_error(capsys, ["run", "--profile", str(bomb), "--out", str(tmp_path / "out")])
    assert "line 2: YAML aliases (*a0) are not allowed" in err and time.perf_counter() - t0 < 5
    with pytest.raises(ParamError, match="aliases"):
        parse_override("x=[&a 1, *a]")


HOSTILE = ['a"b', "a'b", 'back\\slash\\', 'ends with \\"', "new\nline", '"""triple"""', "'''", "Müller ☃ 日本",
           "\\u0041", "\x00nul", "{curly} %s {0}", 'x"+str(1)+"']


@pytest.mark.parametrize("value", [*HOSTILE, HOSTILE, {"k": HOSTILE, "n": [1, 2.5, None, True]}])
def test_any_plain_value_reaches_the_notebook_as_itself(value):
    """What papermill writes into the injected cell reads back as the same value: no string closes its quotes."""
    from papermill.translators import PythonTranslator

    code = PythonTranslator.translate(params.plain(value, "x"))
    assert ast.literal_eval(code) == value


@pytest.mark.parametrize("text", ['"a\\"b"', "'it''s'", '"new\\nline"', "'\"\"\"'", "Müller", "[1, 'a', null]"])
def test_values_come_back_as_yaml_plain_data(text):
    key, value = parse_override(f"x={text}")
    from papermill.translators import PythonTranslator
    assert key == "x" and ast.literal_eval(PythonTranslator.translate(value)) == value


def test_dates_stay_strings_and_non_finite_numbers_are_refused():
    assert load_yaml("2020-01-01", "x") == "2020-01-01"
    for text in (".nan", ".inf", "-.inf"):
        with pytest.raises(ParamError, match="not a finite number"):
            load_yaml(text, "parameter x")
    with pytest.raises(ParamError, match="mapping keys must be strings"):
        load_yaml("{1: a}", "x")
    with pytest.raises(ParamError, match="nested too deeply|not valid YAML"):
        load_yaml("[" * 5000 + "]" * 5000, "x")
    with pytest.raises(ParamError, match="larger than"):
        load_yaml("a" * (params.MAX_YAML_BYTES + 1), "x")


@pytest.mark.parametrize("name, value, default, message", [
    ("epochs", "text", "30", "expected an integer like its default 30, got 'text'"),
    ("bs", 0, "8", "must be at least 1, got 0"),
    ("seed", -1, "0", "must be at least 0"),
    ("n_folds", 1, "5", "must be at least 2"),
    ("n_subjects", 10**12, "8", "at most 100,000, got 1000000000000"),
    ("n_folds", 10**6, "5", "at most 100,"),
    ("lr", "fast", "1e-3", "expected a number"),
    ("views", ["XYZ"], '["2CH", "4CH"]', "'XYZ' is not a view"),
    ("bf16", "yes", "False", "expected true or false"),
    ("rows", {"a": 1}, '["SSLHF"]', "expected a \\[list\\]"),
])
def test_a_value_that_does_not_fit_its_parameter_is_named(name, value, default, message):
    with pytest.raises(ParamError, match=f"parameter {name}: {message}"):
        check_value(name, value, default)


def test_values_that_fit_pass_unchanged():
    assert check_value("lr", 1, "1e-3") == 1 and check_value("max_frames", None, "200") is None
    assert check_value("frames", 30, "None") == 30 and check_value("views", ["SAX"], '["2CH"]') == ["SAX"]
    for prof in runner.profiles():  # every shipped profile fits every notebook it sets
        runner.plan(prof)


@pytest.mark.parametrize("text, message", [
    ("common: [1, 2\n", "line 2: not valid YAML"),
    ("common: 3\n", "section 'common' is not a mapping"),
    ('"00": [1, 2]\n', "section '00' is not a mapping"),
    ("- a\n- b\n", "is not a mapping of sections"),
    ('"00": {seed: !!omap [{a: 1}]}\n', "!!omap is not allowed"),
    ("comon:\n  seed: 1\n", "section 'comon' is neither 'common', 'budgets', 'together' nor a notebook number"),
    ('"10":\n  seed: 1\n', "section '10' names no notebook"),
    ('budgets:\n  "10": 5\n', "budget '10' names no notebook"),
    ('budgets:\n  "00": -1\n', "budget of notebook 00 is not a number of minutes above 0"),
])
def test_a_broken_profile_is_one_line(tmp_path, capsys, text, message):
    prof = tmp_path / "p.yaml"
    prof.write_text(text)
    assert message in one_line_error(capsys, ["run", "--profile", str(prof), "--out", str(tmp_path / "o")])


@pytest.mark.parametrize("args, message", [
    (["run", "-p", "run_dir=/tmp/elsewhere"], "parameter run_dir is set by the run itself"),
    (["run", "-p", "n_subjects=true", "--only", "00"], "parameter n_subjects: expected an integer"),
])
def test_a_parameter_the_run_sets_or_a_flag_as_a_count_is_refused(tmp_path, capsys, args, message):
    assert message in one_line_error(capsys, [*args, "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_a_count_option_below_one_is_refused_by_the_command_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["ingest", "acdc", str(tmp_path), "--out", str(tmp_path / "c"), "--workers", "-4"])
    assert e.value.code == 2 and "--workers: must be at least 1, got -4" in capsys.readouterr().err


def test_an_out_folder_that_is_a_file_is_one_line_for_run_and_fit(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("")
    assert "--out afile is a file" in one_line_error(capsys, ["run", "--only", "00", "--out", str(f)])
    assert "--figures afile is a file" in one_line_error(capsys, ["run", "--only", "09", "--figures", str(f),
                                                                  "--out", str(tmp_path / "run")])
    assert "--run afile is a file" in one_line_error(capsys, ["fit", "edes", "--run", str(f)])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cmrlib.phantom import make_cohort

    run = tmp_path_factory.mktemp("run")
    make_cohort(run / "cohort", n=3, seed=0, n_frames=8, matrix=48, pixel_mm=5.0, views=("4CH",), progress=False)
    return run


@pytest.mark.parametrize("args, message", [
    (["--rows", "-1"], "--rows must be at least 1, got -1"),
    (["-p", "bs=0"], "parameter bs: must be at least 1, got 0"),
    (["-p", "epochs=text"], "parameter epochs: expected an integer"),
    (["-p", "views=[XYZ]"], "parameter views: 'XYZ' is not a view"),
    (["-p", "seed=!!python/name:os.system"], "parameter seed: line 1: the tag"),
])
def test_cmrlib_fit_refuses_bad_arguments_in_one_line_without_loading_torch(run, capsys, args, message):
    fresh = [m for m in list(sys.modules) if m == "torch" or m.startswith("torch.")]
    assert message in one_line_error(capsys, ["fit", "edes", "--run", str(run), *args])
    if not fresh:  # this worker had not loaded torch: the check did not need it
        assert "torch" not in sys.modules


def test_cmrlib_fit_on_a_cohort_without_splits_or_cines_is_one_line(run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    (broken / "cohort" / "splits.csv").unlink()
    assert "no train/valid/test splits" in one_line_error(capsys, ["fit", "edes", "--run", str(broken)])
    shutil.rmtree(broken / "cohort" / "cines")
    assert "no cohort with cines" in one_line_error(capsys, ["fit", "edes", "--run", str(broken)])


def test_one_line_errors_come_before_torch_is_loaded(tmp_path):
    """A mistake in the call is answered in seconds: neither run, fit nor ingest loads torch to say it."""
    import subprocess

    code = ("import sys; from cmrlib import cli\n"
            "for argv in (['run', '-p', 'seed=x'], ['fit', 'edes', '--rows', '0'], "
            "['ingest', 'acdc', sys.argv[1] + '/missing', '--out', sys.argv[1] + '/c']):\n"
            "    assert cli.main(argv) == 2, argv\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("cmrlib: error:") == 3
