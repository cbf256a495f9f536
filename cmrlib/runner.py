"""Run the numbered notebooks in order through papermill with a profile, and record the run."""
from __future__ import annotations

import ast
import atexit
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .params import MAX_YAML_BYTES, load_yaml, merge, parse_override
from .runfiles import guard
from .schedule import budget_by_waves, waves
from .utils import (atomic_write_json, atomic_write_text, cpu_bf16, data_path, float32_sentence, git_commit,
                    package_versions, trains_bf16_on_cpu)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
INJECTED = ("profile", "run_dir", "figures_dir", "budget_min")  # set by the run (options, budgets), never by -p
BUDGETS = "budgets"  # a profile's section of minutes per notebook number (the 2-core CPU for smoke and default)
TOGETHER = "together"  # a profile's groups of notebooks that run side by side, sharing the cores
SHARED = ("threads", "workers")  # a notebook of a group of k gets 1/k of each (at least 1) unless -p sets it
PATH_PARAMS = ("_path", "_dir", "_file", "_csv")  # parameters (by name ending) that point at a user's own data
NB_RE = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")


class RunError(ValueError):
    """A run cannot start: unknown profile, notebook or parameter."""


class NotebookFailed(RuntimeError):
    """A notebook raised: names the notebook, the failing cell and the partial output."""


def profiles() -> list[str]:
    """Names of the profiles shipped inside the package."""
    return sorted(p.name[:-5] for p in resources.files("cmrlib.profiles").iterdir() if p.name.endswith(".yaml"))


def profile_name(profile: str) -> str:
    """'smoke' for a shipped profile, the file stem for a profile given as a YAML path."""
    return Path(profile).stem if profile.endswith((".yaml", ".yml")) else profile


def load_profile(profile: str) -> dict[str, dict[str, Any]]:
    """The profile's sections ('common', one per notebook number, 'budgets': minutes per notebook, and 'together':
    groups of notebooks run side by side): a shipped name or your own YAML file, read as plain data
    (`params.load_yaml`: no tags, no aliases)."""
    if profile.endswith((".yaml", ".yml")):
        path = Path(profile)
        if not path.is_file():
            raise RunError(f"profile file {profile} not found" if not path.exists() else
                           f"profile {profile} is not a regular file")
        if path.stat().st_size > MAX_YAML_BYTES:
            raise RunError(f"profile {profile} is larger than {MAX_YAML_BYTES >> 20} MiB")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise RunError(f"profile {profile} cannot be read ({type(e).__name__})") from None
    elif profile in profiles():
        text = resources.files("cmrlib.profiles").joinpath(f"{profile}.yaml").read_text()
    else:
        raise RunError(f"unknown profile {profile!r}; choose one of {', '.join(profiles())} or give a .yaml file")
    data = load_yaml(text, f"profile {profile}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RunError(f"profile {profile!r} is not a mapping of sections ('common', '00', '01', ...)")
    bad = [k for k, v in data.items() if k != TOGETHER and v is not None and not isinstance(v, dict)]
    if bad:
        raise RunError(f"profile {profile!r}: section {bad[0]!r} is not a mapping of parameters (name: value)")
    odd = [k for k in data if not re.fullmatch(rf"common|{BUDGETS}|{TOGETHER}|\d\d", str(k))]
    if odd:
        raise RunError(f"profile {profile!r}: section {str(odd[0])!r} is neither 'common', '{BUDGETS}', "
                       f"'{TOGETHER}' nor a notebook number ('00' ... '09', quoted)")
    check_budgets(data.get(BUDGETS) or {}, profile)
    check_together(data.get(TOGETHER) or [], profile)
    return {str(k): (v or ([] if k == TOGETHER else {})) for k, v in data.items()}


def check_budgets(budgets: dict, profile: str) -> None:
    """A budgets section maps quoted notebook numbers to a positive number of minutes."""
    for k, v in budgets.items():
        if not re.fullmatch(r"\d\d", str(k)):
            raise RunError(f"profile {profile!r}: budget {str(k)!r} is not a notebook number ('00' ... '09', quoted)")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 10_000:
            raise RunError(f"profile {profile!r}: budget of notebook {k} is not a number of minutes above 0")


def check_together(groups, profile: str) -> None:
    """A together section is a list of groups, each two or more quoted notebook numbers, none in two groups."""
    seen = set()
    if not isinstance(groups, list):
        raise RunError(f"profile {profile!r}: '{TOGETHER}' is not a list of notebook groups ([[\"02\", \"03\"]])")
    for g in groups:
        if not (isinstance(g, list) and len(g) > 1 and all(isinstance(k, str) and re.fullmatch(r"\d\d", k) for k in g)):
            raise RunError(f"profile {profile!r}: {TOGETHER} group {str(g)[:40]!r} is not two or more quoted notebook "
                           "numbers")
        again = seen & set(g)
        if again:
            raise RunError(f"profile {profile!r}: notebook {min(again)} is in two {TOGETHER} groups")
        seen |= set(g)


def run_budget(profile: str) -> float:
    """The profile's minutes for a whole run (`budget_by_waves` of its budgets and together groups)."""
    prof = load_profile(profile)
    return budget_by_waves(prof.get(BUDGETS, {}), prof.get(TOGETHER, []))


def discover(notebooks: str | Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """Numbered notebooks `NN_*.ipynb` in number order, optionally only some numbers."""
    nbs = sorted(p for p in Path(notebooks).glob("*.ipynb") if NB_RE.match(p.name))
    if only:
        want = {o.zfill(2)[:2] for o in only}
        missing = want - {p.name[:2] for p in nbs}
        if missing:
            raise RunError(f"no notebook numbered {', '.join(sorted(missing))} in {notebooks}")
        nbs = [p for p in nbs if p.name[:2] in want]
    return nbs


def declared(nb: Path) -> dict[str, str]:
    """Parameters (name -> default source) assigned in a notebook's tagged `parameters` cell.

    Parsed with `ast` rather than papermill's line regex, which rejects a comment holding '='.
    """
    import nbformat

    cells = [c for c in nbformat.read(str(nb), as_version=4).cells
             if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise RunError(f"{nb.name} has no tagged 'parameters' cell")
    src = cells[0].source
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        raise RunError(f"{nb.name}: parameters cell does not parse: {e}") from None
    out = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            if isinstance(t, ast.Name) and node.value is not None:
                out[t.id] = ast.get_source_segment(src, node.value)
    return out


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`key=value` strings to plain values (YAML scalars and lists: 3, 0.1, true, null, [a, b]; never tags)."""
    return dict(parse_override(it) for it in items or [])


@dataclass
class Plan:
    """What a run will execute: notebooks with their merged parameters, checked before anything runs."""

    profile: str
    out: Path
    figures: Path
    steps: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    waves: list[list[int]] = field(default_factory=list)  # step indices; a wave's notebooks run side by side
    env: dict[str, str] = field(default_factory=dict)
    budgets: dict[str, float | None] = field(default_factory=dict)  # notebook file name -> minutes it may take
    fixed: set[str] = field(default_factory=set)  # parameters -p set: the run never changes them
    cores: dict[str, Any] = field(default_factory=dict)  # the CPU's cores and those free as the run started


def is_path_param(name: str) -> bool:
    return name.endswith(PATH_PARAMS) and name not in INJECTED


PRIVATE_PATHS = ("pseudonym_file",)  # named in run.json and the notebooks by a hash only


def path_references(params: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Path parameters as `$VAR` references, the real paths put in `env` for the kernel (which inherits it).

    A source folder's path may name a person (`/data/MUELLER_HANS/...`): run.json and the executed notebook hold
    `$CMRLIB_DATA/<relative path>` for paths under the data root (`data_dir` or $CMRLIB_DATA), and
    `$CMRLIB_PATH_<hash>` for any other, and for a private file (`PRIVATE_PATHS`: the pseudonym table, whose own
    name may be a person's) wherever it lies; never the path itself. Notebooks expand them with `utils.data_path`.
    """
    out = dict(params)
    if params.get("data_dir"):
        env["CMRLIB_DATA"] = str(data_path(params["data_dir"]).resolve())
        out["data_dir"] = "$CMRLIB_DATA"
    root = env.get("CMRLIB_DATA") or os.environ.get("CMRLIB_DATA")
    for k, v in params.items():
        if k == "data_dir" or not is_path_param(k) or not isinstance(v, str) or not v or v.startswith("$"):
            continue
        real = data_path(v).resolve()
        if root and real.is_relative_to(Path(root).resolve()) and k not in PRIVATE_PATHS:
            rel = real.relative_to(Path(root).resolve()).as_posix()
            out[k] = "$CMRLIB_DATA" + (f"/{rel}" if rel != "." else "")
        else:
            var = "CMRLIB_PATH_" + hashlib.sha256(str(real).encode()).hexdigest()[:12]
            env[var], out[k] = str(real), f"${var}"
    return out


def plan(profile: str, only=None, overrides=None, out=None, figures=None, notebooks=NOTEBOOKS) -> Plan:
    """Merge common, per-notebook and command-line parameters; unknown names are errors."""
    prof = load_profile(profile)
    profile = profile_name(profile)
    out = Path(out or ROOT / "runs" / profile).resolve()
    figures = Path(figures or out / "figures").resolve()
    for what, folder in (("--out", out), ("--figures", figures)):
        if folder.exists() and not folder.is_dir():
            raise RunError(f"{what} {folder.name} is a file, not a folder")
    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) & set(INJECTED))
    if fixed:
        raise RunError(f"parameter {fixed[0]} is set by the run itself (--profile, --out, --figures, the profile's "
                       f"{BUDGETS}), not by -p")
    nbs = discover(notebooks, only)
    if not nbs:
        raise RunError(f"no notebooks found in {notebooks}")
    numbers = {nb.name[:2] for nb in discover(notebooks)}
    for what, keys in (("section", set(prof) - {"common", BUDGETS, TOGETHER}), ("budget", set(prof.get(BUDGETS, {}))),
                       (f"{TOGETHER} group", {k for g in prof.get(TOGETHER, []) for k in g})):
        stray = sorted(keys - numbers)
        if stray:
            raise RunError(f"profile {profile!r}: {what} {stray[0]!r} names no notebook (have "
                           f"{', '.join(sorted(numbers))})")
    p = Plan(profile, out, figures, fixed=set(overrides))
    used = set()
    for nb in nbs:
        decl = declared(nb)
        params = _merge(prof, profile, nb, decl, overrides)
        budget = prof.get(BUDGETS, {}).get(nb.name[:2])
        params.update({k: v for k, v in dict(zip(INJECTED, (profile, str(out), str(figures), budget))).items()
                       if k in decl})
        used |= set(decl)
        p.steps.append((nb, path_references(params, p.env)))
        p.budgets[nb.name] = budget
    unknown = set(overrides) - used
    if unknown:
        raise RunError(f"unknown parameter(s) {', '.join(sorted(unknown))}: no selected notebook declares them")
    p.waves = waves([nb.name[:2] for nb in nbs], prof.get(TOGETHER, []))
    for wave in p.waves:
        for i in wave:
            p.steps[i][1].update(share_cores(p.steps[i][1], len(wave), overrides))
    return p


WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}  # on a busy machine a kernel's OpenMP threads sleep at a barrier, never
# spin on a core another process holds (unless the caller's environment sets its own); on an idle one OpenMP's own
# wait, which keeps two threads' small steps fast (bench/bench_seg_train.py)


def free_cores(sample_s: float = 0.5) -> int:
    """The cores no other process is using as the run starts (at least 1): the CPU's idle share over a short
    sample, in whole cores."""
    import psutil

    n = os.cpu_count() or 1
    busy = psutil.cpu_percent(interval=sample_s) / 100
    return max(1, min(n, int(round(n * (1 - busy)))))


def fit_to_free_cores(p: Plan, free: int) -> None:
    """Each notebook's threads and workers at most its share of the free cores (a wave of k notebooks: 1/k each,
    at least 1), the profile's number when that is smaller; what -p sets stays as set. Recorded in `p.cores`."""
    p.cores = dict(cpu=os.cpu_count() or 1, free_at_start=free, wait_policy=os.environ.get(
        "OMP_WAIT_POLICY", p.env.get("OMP_WAIT_POLICY", "")))
    for wave in p.waves or [[i] for i in range(len(p.steps))]:
        share = max(1, free // len(wave))
        for i in wave:
            params = p.steps[i][1]
            for key in SHARED:
                if key not in p.fixed and isinstance(params.get(key), int) and params[key] > share:
                    params[key] = share


def share_cores(params: dict[str, Any], k: int, overrides: dict) -> dict[str, Any]:
    """A notebook's thread and worker counts when it runs beside k - 1 others: each 1/k of the profile's (at least
    1), so the group keeps the cores the profile gives one notebook; what -p sets stays as set."""
    return {key: max(1, params[key] // k) for key in SHARED
            if k > 1 and key not in overrides and isinstance(params.get(key), int)}


def _merge(prof: dict, profile: str, nb: Path, decl: dict, overrides: dict) -> dict[str, Any]:
    """The profile's common keys the notebook declares, its own section, then the overrides it declares; each value
    checked against the notebook's default (`params.check_value`)."""
    section = prof.get(nb.name[:2], {})
    unknown = set(section) - set(decl)
    if unknown:
        raise RunError(f"profile {profile!r} section {nb.name[:2]!r} sets {sorted(unknown)}, "
                       f"not parameters of {nb.name}")
    return merge(prof, nb.name[:2], decl, overrides)


def earlier_notebooks(p: Plan) -> list[dict]:
    """The records of notebooks an earlier run of the same profile left in this run folder and this plan does not
    re-run (`--only 07 08 09` on a finished run keeps 00-06 in run.json)."""
    from .runfiles import RunFileError, read_json

    try:
        old = read_json(p.out, p.out / "run.json")
    except RunFileError:
        return []
    mine = {nb.name for nb, _ in p.steps}
    return [r for r in old.get("notebooks", []) if old.get("profile") == p.profile and r.get("status") == "ok"
            and r.get("notebook") not in mine]


def _record(p: Plan, results: list[dict], started: float, status: str, commit: str | None) -> Path:
    """Write run.json: this plan's notebooks beside the finished ones already recorded there, read again now so a
    second `--only` run into the same folder, finished meanwhile, keeps its rows; `commit`: the code's as the run
    started (a commit made while it runs is not the code it ran)."""
    earlier = earlier_notebooks(p)
    seeds = sorted({params.get("seed") for _, params in p.steps if "seed" in params})
    return atomic_write_json(p.out / "run.json", {
        "profile": p.profile, "status": status, "out": str(p.out), "figures": str(p.figures),
        "started": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 2), "git_commit": commit, "seeds": seeds,
        "python": sys.version.split()[0], "platform": platform.platform(), "versions": package_versions(),
        "cpu_bf16": cpu_bf16(),  # a notebook whose `bf16` is true trains in bfloat16 on the CPU only where this holds
        "cores": p.cores,  # the CPU's cores, those free as the run started, and OpenMP's wait policy
        "notebooks": sorted(earlier + results, key=lambda r: r["notebook"])})


@contextlib.contextmanager
def environ(env: dict[str, str]):
    """`env` added to this process's environment while the block runs (the kernels it starts inherit it)."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _private_paths(env: dict[str, str]) -> list[tuple[str, str]]:
    """(real path, its `$VAR` name) for every path a run was given, longest first (a data root contains the rest)."""
    known = {**{k: v for k, v in env.items() if k.startswith("CMRLIB_")},
             **({"CMRLIB_DATA": os.environ["CMRLIB_DATA"]} if os.environ.get("CMRLIB_DATA") else {})}
    pairs = {(real, f"${var}") for var, real in known.items() if real}
    pairs |= {(str(Path(real).resolve()), name) for real, name in pairs}
    return sorted(pairs, key=lambda p: -len(p[0]))


def redact(text: str, env: dict[str, str]) -> str:
    """`text` with every path the run was given written as its `$VAR` reference, as run.json holds it: an error
    message that names a user's file (a missing labels table) keeps the same rule as the parameters."""
    for real, name in _private_paths(env):
        text = text.replace(real, name)
    return text


def redact_notebook(path: Path, env: dict[str, str]) -> None:
    """The executed notebook with `redact` applied to everything it printed (errors and tracebacks included)."""
    if not path.exists() or not _private_paths(env):
        return
    raw = path.read_text(encoding="utf-8")
    out = raw
    for real, name in _private_paths(env):
        for form in {json.dumps(real, ensure_ascii=False)[1:-1], json.dumps(real)[1:-1]}:
            out = out.replace(form, json.dumps(name)[1:-1])
    if out != raw:
        atomic_write_text(path, out)


def _kernel_manager():
    """The kernels' transport: local IPC sockets where the system has them (no network port, and none of ipykernel's
    warning about TCP without encryption on every notebook), TCP elsewhere."""
    from jupyter_client.manager import AsyncKernelManager

    if os.name != "posix":
        return AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            # each kernel's sockets in a private folder of its own: two runs at once never share a socket
            where = Path(tempfile.mkdtemp(prefix="cmrlib-kernel-"))
            atexit.register(shutil.rmtree, where, True)
            super().__init__(**{"transport": "ipc", "ip": str(where / "ipc"), **kwargs})

    return IPCKernelManager


def execute(p: Plan, log=print, free: int | None = None) -> Path:
    """Execute the plan wave by wave (a wave's notebooks side by side), their threads fitted to the cores free as it
    starts (`free`: that number, measured when None) and OpenMP told to wait passively when some are taken; stop
    after the wave of the first failure (keeping its partial notebook); write run.json."""
    free = free_cores() if free is None else free
    if "OMP_WAIT_POLICY" not in os.environ and free < (os.cpu_count() or 1):
        p.env.update(WAIT_POLICY)
    fit_to_free_cores(p, free)
    if p.cores["free_at_start"] < p.cores["cpu"]:
        log(f"note: {p.cores['free_at_start']} of {p.cores['cpu']} cores free as the run starts: each notebook's "
            "threads and workers fitted to them (run.json records both)")
    with environ(p.env):  # the kernels see the real paths behind the `$VAR` parameters; this process keeps its own
        return _execute(p, log)


def write_places(p: Plan) -> list[tuple[Path, Path]]:
    """(root, place) of every file or folder the run itself creates or replaces: run.json, notebooks/ and each
    executed notebook, the figure folder (inside the run or its own root); each notebook guards its own folder."""
    return [(p.out, p.out / "run.json"), (p.out, p.out / "notebooks"),
            *((p.out, p.out / "notebooks" / nb.name) for nb, _ in p.steps),
            (p.out if p.out in p.figures.parents else p.figures, p.figures)]


def _execute(p: Plan, log) -> Path:
    for root, place in write_places(p):  # before anything is written
        guard(root, place)
    (p.out / "notebooks").mkdir(parents=True, exist_ok=True)
    p.figures.mkdir(parents=True, exist_ok=True)
    started, results, n, commit = time.time(), [], len(p.steps), git_commit(ROOT)
    note = float32_note(p)
    if note:
        log(note)
    for wave in p.waves or [[i] for i in range(n)]:
        rows = [_started_row(p, i, wave) for i in wave]
        for i, row in zip(wave, rows):
            beside = "".join(f", beside {Path(o).stem}" for o in row.get("together", []))
            log(f"[{i + 1}/{n}] {p.steps[i][0].stem} ({p.profile}{_budget_text(row['budget_min'])}{beside}) ...")
        _record(p, [*results, *(dict(r, status="running") for r in rows)], started, "running", commit)

        def one(k: int) -> dict:
            i, row = wave[k], rows[k]
            _execute_notebook(p, i, row)
            if row["status"] == "ok":
                log(progress_line(i + 1, n, p.steps[i][0].stem, row["wall_s"], row["budget_min"], time.time() - started))
            return row

        if len(wave) == 1:
            one(0)
        else:  # each notebook in its own kernel; this process only waits on them
            with ThreadPoolExecutor(len(wave)) as pool:
                list(pool.map(one, range(len(wave))))
        results += rows
        failed = [r for r in rows if r["status"] == "failed"]
        _record(p, results, started, "failed" if failed else "running", commit)
        if failed:
            r = failed[0]
            raise NotebookFailed(f"{r['notebook']} failed in cell {r['failed_cell']}: {r['error']}\n"
                                 f"partial notebook: {r['output']}")
    return _record(p, results, started, "ok", commit)


def float32_note(p: Plan) -> str | None:
    """The line a run prints first when notebooks set to train in bfloat16 meet a CPU that lacks it."""
    wanting = [nb.name[:2] for nb, params in p.steps if params.get("bf16") and not trains_bf16_on_cpu(params["bf16"])]
    return f"note: {float32_sentence(wanting)}" if wanting else None


def _started_row(p: Plan, i: int, wave: list[int]) -> dict:
    """The record of step i as it starts (the other notebooks of its wave named in `together`)."""
    nb, params = p.steps[i]
    row = {"notebook": nb.name, "parameters": params, "output": str(p.out / "notebooks" / nb.name),
           "git_commit": git_commit(ROOT), "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "budget_min": p.budgets.get(nb.name)}
    if len(wave) > 1:
        row["together"] = [p.steps[j][0].name for j in wave if j != i]
    return row


def _execute_notebook(p: Plan, i: int, row: dict) -> None:
    """Run step i through papermill; its row gains status, wall time and, on failure, the cell and the error."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    nb, params = p.steps[i]
    dst, t0 = Path(row["output"]), time.time()
    try:
        pm.execute_notebook(str(nb), str(dst), parameters=params, cwd=str(ROOT), kernel_name="python3",
                            progress_bar=False, log_output=False, kernel_manager_class=_kernel_manager())
    except PapermillExecutionError as e:
        redact_notebook(dst, p.env)
        row.update(status="failed", wall_s=round(time.time() - t0, 2), failed_cell=e.cell_index,
                   error=redact(f"{e.ename}: {e.evalue}", p.env))
        return
    redact_notebook(dst, p.env)
    row.update(status="ok", wall_s=round(time.time() - t0, 2))


def _budget_text(budget: float | None) -> str:
    return "" if budget is None else f", budget {budget:g} min"


def progress_line(i: int, n: int, stem: str, wall_s: float, budget: float | None, total_s: float) -> str:
    """What `make reproduce` prints as each notebook ends: its time against its budget, and the run's so far."""
    minutes = wall_s / 60
    against = "" if budget is None else f" (budget {budget:g} min{', OVER BUDGET' if minutes > budget else ''})"
    shown = f"{minutes:.2f}" if minutes < 10 else f"{minutes:.1f}"  # 1.04 of a 1-min budget reads as over
    return f"[{i}/{n}] {stem} ok in {shown} min{against}; run so far {total_s / 60:.1f} min"


def rerun(run_dir: str | Path, only: list[str], figures=None, log=print) -> Path:
    """Run some notebooks again on a finished run folder, with the run's own profile and figure folder."""
    from .runfiles import RunFileError, read_json

    f = Path(run_dir) / "run.json"
    if not f.exists():
        raise RunError(f"{f}: no run record (run `cmrlib run --out {run_dir}` first)")
    try:
        old = read_json(Path(run_dir), f)
    except RunFileError as e:
        raise RunError(str(e)) from None
    if not isinstance(old.get("profile"), str) or not isinstance(old.get("figures", ""), (str, type(None))):
        raise RunError("run.json: no profile to run with (not a cmrlib run record)")
    return run(old["profile"], only, None, run_dir, figures or recorded_figures(run_dir, old), log=log)


def recorded_figures(run_dir: str | Path, record: dict) -> str | None:
    """The figure folder a run record names, moved with the run: one recorded inside the run's folder is the same
    place inside `run_dir` (a copied or moved run writes its figures into itself, never into the folder it came
    from)."""
    figures, out = record.get("figures"), record.get("out")
    if not (isinstance(figures, str) and isinstance(out, str)):
        return figures
    try:
        return str(Path(run_dir) / Path(figures).relative_to(out))
    except ValueError:  # a figure folder of the user's choosing, outside the run
        return figures


def run(profile: str = "smoke", only=None, overrides=None, out=None, figures=None, log=print) -> Path:
    """Plan then execute a run; returns the path of run.json."""
    return execute(plan(profile, only, overrides, out, figures), log=log)
