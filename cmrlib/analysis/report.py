"""The run's results report and figure index (notebook 09), written from the run folder alone.

`report(run_dir)` is markdown: the run's profile, commit, date and wall times (run.json), every notebook's targets
and its headline tables beside the papers' numbers. `glance(run_dir)` is the README's results table, a row per
notebook from its `glance.json` and its targets. `timing(run_dir)` is docs/running.md's minutes per notebook and
its largest steps. `fill` puts each between its markers on a page (the report in docs/results.md, the table in the
README, the minutes in docs/running.md), and a run table in each run-table block of a notebook page; `drift` names
every number a block shows that the run does not, and `untraced` every number of a page's prose that the run's
tables do not hold, so that no page states a number typed by hand unseen.
"""
from __future__ import annotations

import datetime as dt
import difflib
import fnmatch
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..results import ROOT, TARGET_COLUMNS, recomputed
from ..runfiles import RunFileError, read_csv, read_json
from ..utils import atomic_write_text, float32_sentence

__all__ = ["ReportError", "load_run", "notebook_table", "targets_table", "headlines", "report", "glance",
           "figure_index", "side_by_side", "timing", "splice_readme", "fill", "drift", "untraced", "MARKERS",
           "GLANCE_MARKERS", "TIMING_MARKERS"]

MARKERS = ("<!-- results:start (written by `cmrlib report`; edits here are overwritten) -->", "<!-- results:end -->")
GLANCE_MARKERS = ("<!-- glance:start (written by `cmrlib report --readme`; edits here are overwritten) -->",
                  "<!-- glance:end -->")
TIMING_MARKERS = ("<!-- timing:start (written by `cmrlib report --readme`; edits here are overwritten) -->",
                  "<!-- timing:end -->")


class ReportError(FileNotFoundError):
    """The run folder lacks what the report needs (run.json), or holds a file the report cannot read or show."""


RUN_FIELDS = {"profile": str, "git_commit": str, "started": str, "notebooks": list}  # what the report shows of run.json
NOTEBOOK_FIELDS = {"notebook": str, "status": str, "wall_s": (int, float), "budget_min": (int, float),
                   "git_commit": str, "started": str, "together": list, "parameters": dict}
SHOWN_NAME = re.compile(r"[\w.-]{1,64}")  # a profile's or notebook's name as the report may print it


def _checked(record: dict, fields: dict, where: str) -> dict:
    """A record whose fields the report reads have the types it expects (None stands for absent)."""
    for k, kind in fields.items():
        if record.get(k) is not None and (not isinstance(record[k], kind) or isinstance(record[k], bool)):
            raise ReportError(f"{where}: its field {k!r} is not a {getattr(kind, '__name__', 'number')}")
    return record


def load_run(run_dir: str | Path) -> dict:
    """run.json of a run folder (read as `runfiles` reads a run's files: a regular file inside it, bounded); a clear
    error when the folder holds no run or a damaged one."""
    run_dir = Path(run_dir)
    f = run_dir / "run.json"
    if not f.exists() and not f.is_symlink():
        raise ReportError(f"{f}: no run record (run `cmrlib run` with --out {run_dir} first)")
    try:
        run = read_json(run_dir, f)
    except RunFileError as e:
        raise ReportError(f"{run_dir.name}/{e}") from None
    _checked(run, RUN_FIELDS, "run.json")
    for r in run.get("notebooks") or []:
        if not isinstance(r, dict) or not isinstance(r.get("notebook"), str) \
                or not SHOWN_NAME.fullmatch(r["notebook"]):
            raise ReportError("run.json: not a cmrlib run record (a notebook entry without its name)")
        _checked(r, NOTEBOOK_FIELDS, f"run.json's {r['notebook']}")
    if run.get("profile") is not None and not SHOWN_NAME.fullmatch(run["profile"]):
        raise ReportError("run.json: its profile is not a profile's name")
    return run


def read_table(f: Path, run_dir: Path | None = None) -> pd.DataFrame:
    """A run folder's CSV table (`runfiles.read_csv`: a regular file inside the run folder, bounded); a damaged
    one is a `ReportError` naming it."""
    try:
        return read_csv(run_dir or f.parent.parent, f)
    except RunFileError as e:
        raise ReportError(str(e)) from None


def notebook_table(run: dict) -> pd.DataFrame:
    """One row per notebook of the run: status, wall time in minutes beside its profile's budget (over marked), and
    the commit it ran at."""
    rows = []
    for r in run.get("notebooks", []):
        minutes, budget = round(r.get("wall_s", np.nan) / 60, 2), r.get("budget_min")
        rows.append(dict(notebook=r["notebook"].removesuffix(".ipynb"), status=r.get("status"), minutes=minutes,
                         budget=budget, within="" if budget is None else "**over**" if minutes > budget else "yes",
                         commit=(r.get("git_commit") or "")[:7]))
    return pd.DataFrame(rows, columns=["notebook", "status", "minutes", "budget", "within", "commit"])


def finished(run: dict) -> set[str]:
    """The numbers of the notebooks that ran to their end in this run (run.json's records): another notebook's
    folder may hold the tables of an older run, or half of a killed one."""
    return {r["notebook"][:2] for r in run.get("notebooks") or [] if r.get("status") == "ok"}


def targets_table(run_dir: str | Path, only: set[str] | None = None) -> pd.DataFrame:
    """Every notebook's targets (`NN/targets.csv`) in one table, with the notebook number (`only`: these
    notebooks')."""
    cols = ["notebook", *TARGET_COLUMNS]
    parts = [read_table(f, Path(run_dir)).assign(notebook=f.parent.name)
             for f in sorted(Path(run_dir).glob("[0-9][0-9]/targets.csv")) if only is None or f.parent.name in only]
    if not parts:
        return pd.DataFrame(columns=cols)
    bad = [c for c in ("figure", "value", "goal", "target") if not all(c in p for p in parts)]
    if bad:
        raise ReportError(f"{run_dir}: a targets.csv lacks column(s) {bad}")
    every = pd.concat(parts, ignore_index=True)
    return recomputed(every).assign(notebook=every["notebook"])[cols]


def targets_shown(tg: pd.DataFrame) -> pd.DataFrame:
    """The targets table as the report prints it: the value with its interval, n and test, and met as yes / no."""
    num = lambda c: pd.to_numeric(tg[c], errors="coerce")
    interval = [f"[{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) and np.isfinite(hi) else ""
                for lo, hi in zip(num("low"), num("high"))]
    return pd.DataFrame({"notebook": tg["notebook"], "figure": tg["figure"], "value": num("value").round(3),
                         "interval": interval, "n": [f"{v:.0f}" if np.isfinite(v) else "" for v in num("n")],
                         "test": tg["test"], "goal": tg["goal"], "target": tg["target"],
                         "met": tg["met"].map({True: "yes", False: "**no**"})})


def notebook_headlines(run_dir: Path, only: set[str] | None = None):
    """(title, table) of each table the notebooks list in their `headlines.json` (`Notebook.headline`), in notebook
    order (`only`: these notebooks'): the report knows no method. A listed name must be a plain CSV file of that
    notebook's own folder."""
    for index in sorted(run_dir.glob("[0-9][0-9]/headlines.json")):
        if only is not None and index.parent.name not in only:
            continue
        try:
            listed = read_json(run_dir, index, kind=None)
        except RunFileError as e:
            raise ReportError(f"not a readable headline list: {e}") from None
        if not isinstance(listed, dict):
            raise ReportError(f"{index}: not a headline list (table file -> title)")
        for name, title in listed.items():
            if not (isinstance(title, str) and re.fullmatch(r"[\w.-]+\.csv", str(name))):
                raise ReportError(f"{index}: {str(name)[:40]!r} is not a table of this notebook's folder")
            if (index.parent / name).exists() or (index.parent / name).is_symlink():
                yield f"{index.parent.name} · {title}", read_table(index.parent / name, run_dir)


def headlines(run_dir: str | Path, only: set[str] | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) of every headline table the run folder has, in notebook order (`only`: these notebooks')."""
    return list(notebook_headlines(Path(run_dir), only))


def cell(v):
    """A value as it may stand in a markdown table: HTML escaped, `|` escaped, on one line; a cell holding one of
    the README's markers is refused (it would make the block impossible to find again)."""
    if not isinstance(v, str):
        return v
    if any(m in v for m in (*MARKERS, *GLANCE_MARKERS, *TIMING_MARKERS)) or re.search(
            r"(results|glance|timing):(start|end)|run-table", v):
        raise ReportError(f"a table cell holds a results marker ({v[:40]!r}): refused")
    return html.escape(" ".join(v.split()), quote=False).replace("|", "\\|")


def _md(df: pd.DataFrame) -> str:
    df = df.rename(columns=lambda c: cell(str(c)))
    shown = df.map(cell).astype(object).where(df.notna(), None)
    return shown.to_markdown(index=False, floatfmt="g", missingval="–")


def _shown(path: Path) -> str:
    """A run folder as the reader would type it: relative to the project when inside it, else its name."""
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.name


def _of_budget(run: dict) -> str:
    """' (budget N min)' when every notebook of the run has a budget: notebooks run side by side (`together`)
    count the largest of their budgets once."""
    rows = {r["notebook"]: r for r in run.get("notebooks", [])}
    if not rows or any(r.get("budget_min") is None for r in rows.values()):
        return ""
    from ..schedule import budget_by_waves

    groups = [[name, *r["together"]] for name, r in rows.items() if r.get("together")]
    return f" (budget {budget_by_waves({n: r['budget_min'] for n, r in rows.items()}, groups):g} min)"


def notebook_minutes(run: dict) -> tuple[float, float]:
    """(minutes the notebooks ran by the clock, minutes they took each): the first is the union of their intervals
    (`started` + `wall_s`), less than the second where notebooks ran side by side (a profile's `together`)."""
    spans, total = [], 0.0
    for r in run.get("notebooks", []):
        wall = float(r.get("wall_s") or 0.0)
        total += wall
        try:
            t0 = dt.datetime.fromisoformat(str(r["started"])).timestamp()
        except (KeyError, ValueError):  # a record without its start: counted as if alone
            t0 = None
        spans.append((t0, wall))
    clock, end = 0.0, -np.inf
    for t0, wall in sorted((s for s in spans if s[0] is not None), key=lambda s: s[0]):
        clock += max(0.0, t0 + wall - max(t0, end))
        end = max(end, t0 + wall)
    clock += sum(wall for t0, wall in spans if t0 is None)
    return clock / 60, total / 60


def _run_minutes(run: dict) -> str:
    """'N min of notebooks', with their summed minutes where some ran side by side."""
    clock, each = notebook_minutes(run)
    side = f", {each:.1f} min summed over notebooks run side by side" if each - clock > 0.05 else ""
    return f"{clock:.1f} min of notebooks{side}"


def _float32_note(run: dict) -> str:
    """A line under the timing table when the run's CPU had no bfloat16 for notebooks set to train in it."""
    wanting = [str(r.get("notebook", ""))[:2] for r in run.get("notebooks", [])
               if (r.get("parameters") or {}).get("bf16")]
    if run.get("cpu_bf16") is not False or not wanting:
        return ""
    return f"In this run, {float32_sentence(wanting)}."


def report(run_dir: str | Path) -> str:
    """The results report of a run folder as markdown."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    nbs = notebook_table(run)
    done = finished(run)
    tg = targets_table(run_dir, done)
    lines = [f"Profile `{cell(str(run.get('profile')))}`, commit `{(run.get('git_commit') or '')[:7]}`, started "
             f"{run.get('started', '')[:10]}; {_run_minutes(run)}{_of_budget(run)} "
             f"(`cmrlib run --profile {run.get('profile')}`; this report: `cmrlib report {_shown(run_dir)}`).", "",
             _md(nbs), ""]
    if note := _float32_note(run):
        lines += [note, ""]
    unfinished = [f"{r['notebook'][:2]} ({cell(str(r.get('status')))})" for r in run.get("notebooks") or []
                  if r["notebook"][:2] not in done]
    if unfinished:
        lines += [f"Not finished in this run, their tables not shown: {', '.join(unfinished)}.", ""]
    if len(tg):
        lines += [f"**Targets**: {int(tg['met'].sum())} of {len(tg)} met (with an interval, all of it must meet "
                  "the target).", "", _md(targets_shown(tg)), ""]
    for title, table in headlines(run_dir, done):
        lines += [f"**{cell(title)}**", "", _md(table), ""]
    return "\n".join(lines).rstrip() + "\n"


def side_by_side(run: dict) -> list[list[dict]]:
    """The run's notebook records in run order, those run side by side (`together`) in one group."""
    rows, groups, seen = run.get("notebooks") or [], [], set()
    for r in rows:
        if r["notebook"] not in seen:
            group = [r] + [o for o in rows if o["notebook"] in (r.get("together") or []) and o["notebook"] not in seen]
            seen.update(o["notebook"] for o in group)
            groups.append(group)
    return groups


def _steps(run_dir: Path, run: dict, least_min: float) -> pd.DataFrame:
    """Every step of a finished notebook (`NN/timings.csv`) that took at least `least_min` minutes."""
    rows = []
    for nb in sorted(finished(run)):
        f = run_dir / nb / "timings.csv"
        if f.is_file():
            t = read_table(f, run_dir)
            rows += [dict(notebook=nb, step=str(r.step), minutes=round(r.seconds / 60, 1))
                     for r in t.itertuples() if r.seconds / 60 >= least_min]
    return pd.DataFrame(rows, columns=["notebook", "step", "minutes"])


def timing(run_dir: str | Path, least_min: float = 3.0) -> str:
    """The run's minutes as docs/running.md shows them: its total by the clock against the budget, each notebook's
    minutes against its budget (those run side by side on one row), and every step of at least `least_min` min."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    clock, each = notebook_minutes(run)
    rows, over = [], []
    for group in side_by_side(run):
        names = [r["notebook"][:2] for r in group]
        minutes = [r.get("wall_s", np.nan) / 60 for r in group]
        budgets = [r.get("budget_min") for r in group]
        over += [f"{n} ({m:.1f} against {b:g})" for n, m, b in zip(names, minutes, budgets)
                 if b is not None and m > b]
        rows.append(dict(notebook=" and ".join(names) + (" side by side" if len(group) > 1 else ""),
                         minutes=" and ".join(f"{m:.1f}" for m in minutes),
                         budget=" and ".join("–" if b is None else f"{b:g}" for b in budgets),
                         commit=", ".join(sorted({f"`{(r.get('git_commit') or '')[:7]}`" for r in group}))))
    lines = [f"From one run: `{_shown(run_dir)}`, profile `{cell(str(run.get('profile')))}`, commit "
             f"`{(run.get('git_commit') or '')[:7]}`: {clock:.1f} min by the clock{_of_budget(run)}, {each:.1f} "
             "min summed over the notebooks.", "",
             _md(pd.DataFrame(rows, columns=["notebook", "minutes", "budget", "commit"])), "",
             f"Over budget: {', '.join(over)}." if over else "Every notebook kept its budget.", ""]
    if note := _float32_note(run):
        lines += [note, ""]
    steps = _steps(run_dir, run, least_min)
    if len(steps):
        lines += [f"Every step of at least {least_min:g} min (`NN/timings.csv`):", "", _md(steps)]
    return "\n".join(lines).rstrip() + "\n"


GLANCE_CELLS = {"phantom": "phantom", "real": "real patients"}  # glance.json's cells -> the table's columns
GLANCE_TEXT = ("method", "headline", "paper")


def _glance_row(f: Path, run_dir: Path) -> dict:
    """A notebook's glance.json, checked: text fields, and per cell a list of (label, pattern) pairs."""
    try:
        g = read_json(run_dir, f)
    except RunFileError as e:
        raise ReportError(f"not a readable results row: {e}") from None
    ok = isinstance(g, dict) and all(isinstance(g.get(k), str) for k in GLANCE_TEXT) and all(
        isinstance(g.get(c, []), list) and all(isinstance(x, list) and len(x) == 2 and all(
            isinstance(y, str) and len(y) <= 200 for y in x) for x in g.get(c, [])) for c in GLANCE_CELLS)
    if not ok:
        raise ReportError(f"{f.parent.name}/{f.name}: not a results row (method, headline, paper; per cell a list of "
                          "label and target-name pairs)")
    return g


def _value(row) -> str:
    """A target's value as the results table shows it: 3 significant digits, with its interval when it has one."""
    num = lambda v: f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    v, lo, hi = (pd.to_numeric(pd.Series([row.get(k)]), errors="coerce").iloc[0] for k in ("value", "low", "high"))
    if not np.isfinite(v):
        return "not measured"
    return num(v) + (f" [{num(lo)}, {num(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "")


def glance_table(run_dir: str | Path) -> pd.DataFrame:
    """The README's results table: a row per finished notebook with a glance.json, each cell the values of the
    targets it names (by label; `fnmatch` patterns over the targets' names) and whether every one of them is met."""
    run_dir = Path(run_dir)
    done = finished(load_run(run_dir))
    tg = targets_table(run_dir, done)
    rows = []
    for f in sorted(run_dir.glob("[0-9][0-9]/glance.json")):
        if f.parent.name not in done:
            continue
        g, mine = _glance_row(f, run_dir), tg[tg["notebook"] == f.parent.name]
        row, met = {"method": f"{g['method']} ({f.parent.name})", "headline": g["headline"], "paper": g["paper"]}, []
        for cell_name, column in GLANCE_CELLS.items():
            shown = []
            for label, pattern in g.get(cell_name, []):
                for _, r in mine[[fnmatch.fnmatchcase(str(n), pattern) for n in mine["figure"]]].iterrows():
                    shown.append(f"{label} {_value(r)}")
                    met.append((cell_name, bool(r["met"])))
            row[column] = "; ".join(shown) or "–"
        said = [f"{c} {'yes' if all(m for k, m in met if k == c) else 'no'}" for c in GLANCE_CELLS
                if any(k == c for k, _ in met)]
        row["target met"] = ", ".join(said) or "–"
        rows.append(row)
    return pd.DataFrame(rows, columns=[*GLANCE_TEXT, *GLANCE_CELLS.values(), "target met"])


def glance(run_dir: str | Path) -> str:
    """The README's results table as markdown, under one line naming the run it comes from."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    head = (f"From one run: `{_shown(run_dir)}`, profile `{cell(str(run.get('profile')))}`, commit "
            f"`{(run.get('git_commit') or '')[:7]}`, {_run_minutes(run)}. Each cell is the run's targets "
            "(`NN/targets.csv`) by name, with its interval where it has one; met: every one of them (all of an "
            "interval).")
    return f"{head}\n\n{_md(glance_table(run_dir))}\n"


EXTRA_CAPTIONS = "captions.json"  # in the figures folder: {stem: {caption, notebook, file}} of figures no notebook drew


def figure_index(run_dir: str | Path, figures_dir: str | Path) -> str:
    """figures/README.md: one line per figure in the folder with its caption, notebook and the run's commit."""
    run_dir, figures_dir = Path(run_dir), Path(figures_dir)
    run = load_run(run_dir)
    commits = {r["notebook"][:2]: (r.get("git_commit") or "")[:7]
               for r in run.get("notebooks", [])}
    captions = {}
    for root, f in [(run_dir, f) for f in sorted(run_dir.glob("[0-9][0-9]/figures.json"))] + [
            (figures_dir, figures_dir / EXTRA_CAPTIONS)]:
        if f.exists() or f.is_symlink():  # EXTRA_CAPTIONS: figures drawn outside the notebooks (the report's picture)
            try:
                found = read_json(root, f)
            except RunFileError as e:
                raise ReportError(f"not a readable caption list: {e}") from None
            captions.update({k: v for k, v in found.items() if isinstance(v, dict)})
    rows = []
    for png in sorted(figures_dir.rglob("*.png")):
        rel = png.relative_to(figures_dir)
        info = captions.get(png.stem, {}) if rel.parent == Path(".") else {}
        nb = info.get("notebook", "09" if rel.parent.name == "paper" else png.stem[:2])
        if rel.parent.name == "paper":
            drawn = captions.get(png.stem, {}).get("caption")  # the notebook's own caption of the same figure
            info = dict(caption=f"paper style (PNG + PDF) of {drawn}") if drawn else {}
        rows.append(dict(figure=f"[{rel}]({rel.as_posix()})", shows=info.get("caption", "(no caption recorded)"),
                         notebook=nb,
                         commit=commits.get(nb, "")))
    head = [f"# Figures of run `{run_dir.name}` (profile `{run.get('profile')}`)", "",
            "Written by notebook 09 (`cmrlib figures RUN_DIR`) from the run folder; regenerated, not edited."]
    if (figures_dir / "paper").is_dir():
        head.append("`paper/` holds the table-based figures again in one paper style, each with a PDF copy.")
    head.append("")
    table = pd.DataFrame(rows, columns=["figure", "shows", "notebook", "commit"])
    return "\n".join(head) + "\n" + _md(table) + "\n"


def _spliced(page: str, name: str, text: str, markers: tuple[str, str]) -> str:
    """`page` with `text` between its markers; an error unless the page holds each marker exactly once, in order,
    and `text` holds neither."""
    start, end = markers
    if page.count(start) != 1 or page.count(end) != 1 or page.index(start) > page.index(end):
        raise ReportError(f"{name}: needs each results marker once, in order ({start!r} ... {end!r})")
    if start in text or end in text:
        raise ReportError("the report holds a results marker: refused")
    head, rest = page.split(start, 1)
    return f"{head}{start}\n{text.rstrip()}\n{end}{rest.split(end, 1)[1]}"


def splice_readme(readme: str | Path, text: str, markers: tuple[str, str] = MARKERS) -> Path:
    """Replace what lies between a page's markers (the results report's by default) with `text`, atomically."""
    readme = Path(readme)
    return atomic_write_text(readme, _spliced(readme.read_text(), readme.name, text, markers))


RUN_TABLE = re.compile(r"<!-- run-table (?P<file>\S+?)(?: cols=(?P<cols>[^>]*?))?(?: where=(?P<where>[^>]*?))? -->\n"
                       r"(?P<shown>.*?)<!-- /run-table -->", re.S)  # a page's copy of one run table, written by the run
TABLE_FILE = re.compile(r"\d\d/[\w.-]+\.csv")  # a notebook folder's table, as a run-table block names it


def run_table(run_dir: Path, file: str, cols: str | None = None, where: str | None = None) -> str:
    """One table of the run as a page shows it between its run-table markers: `NN/name.csv`, the columns `cols`
    (names split by '|'; all when None), the rows `where` keeps (`column:pattern|pattern`, `fnmatch` on the
    column's text), in the run's own formatting."""
    if not TABLE_FILE.fullmatch(file):
        raise ReportError(f"run-table {file!r}: not a notebook folder's table (NN/name.csv)")
    t = read_table(run_dir / file, run_dir)

    def column(name: str) -> str:
        if name.strip() not in t.columns:
            raise ReportError(f"run-table {file}: no column {name.strip()!r} (it has {', '.join(map(str, t.columns))})")
        return name.strip()
    if where is not None:
        col, _, patterns = where.partition(":")
        t = t[t[column(col)].astype(str).map(lambda v: any(fnmatch.fnmatchcase(v, x.strip())
                                                           for x in patterns.split("|")))]
    if cols is not None:
        t = t[[column(c) for c in cols.split("|")]]
    return _md(t)


def _run_tables(run_dir: Path, text: str) -> tuple[str, int]:
    """The page with every run-table block written from the run, and how many it holds."""
    def write(m: re.Match) -> str:
        head = m.group(0).split("\n", 1)[0]
        return f"{head}\n{run_table(run_dir, m['file'], m['cols'], m['where'])}\n<!-- /run-table -->"
    return RUN_TABLE.subn(write, text)


def filled(run_dir: str | Path, page: str | Path) -> str:
    """A page as the run would write it: the report between its results markers, the results table between its
    glance markers, the minutes between its timing markers, each run-table block's table (a page holds any of
    them); an error when it holds none."""
    page = Path(page)
    text, parts = page.read_text(), []
    for markers, make in ((MARKERS, report), (GLANCE_MARKERS, glance), (TIMING_MARKERS, timing)):
        if markers[0] in text or markers[1] in text:
            text = _spliced(text, page.name, make(run_dir), markers)
            parts.append(markers)
    text, tables = _run_tables(Path(run_dir), text)
    if not parts and not tables:
        raise ReportError(f"{page.name}: holds no results, glance, timing or run-table markers")
    return text


def fill(run_dir: str | Path, page: str | Path) -> Path:
    """Write the run's report and results table between a page's markers (`filled`), atomically."""
    return atomic_write_text(Path(page), filled(run_dir, page))


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def drift(run_dir: str | Path, page: str | Path) -> list[str]:
    """Every line between a page's markers that differs from what the run writes there, as `page line N: what the
    page says -> what the run says` (its numbers when only numbers differ); empty when the page is the run's."""
    page = Path(page)
    now, run = page.read_text().splitlines(), filled(run_dir, page).splitlines()
    out = []
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(a=now, b=run, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        for k in range(max(a1 - a0, b1 - b0)):
            a = now[a0 + k] if a0 + k < a1 else ""
            b = run[b0 + k] if b0 + k < b1 else ""
            na, nb = NUMBER.findall(a), NUMBER.findall(b)
            if NUMBER.sub("#", a) == NUMBER.sub("#", b):
                said = ", ".join(f"{x} -> {y}" for x, y in zip(na, nb) if x != y)
            else:
                said = f"{a[:100]!r} -> {b[:100]!r}"
            out.append(f"{page.name} line {a0 + k + 1}: {said}")
    return out


DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")  # a number with a decimal point, as prose and tables show it
ELSEWHERE = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{7}\b|bench/")  # a line naming another run's commit or a bench


def shown_values(folder: Path, root: Path, max_bytes: int = 2_000_000) -> set[str]:
    """Every number of a notebook folder's tables as a page may show it (1-4 decimals, either sign dropped)."""
    shown = set()
    for f in sorted(folder.rglob("*.csv")):
        if f.stat().st_size <= max_bytes:
            cells = read_table(f, root).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float).ravel()
            for v in np.abs(cells[np.isfinite(cells)]):
                shown.update(f"{v:.{d}f}" for d in range(1, 5))
    return shown


def untraced(run_dir: str | Path, page: str | Path) -> list[str]:
    """Every decimal number a notebook page (`NN_*.md`) shows that no table of the run's notebook NN holds at the
    shown precision, as `page line N: numbers`; lines naming another run's commit or a bench, and run-table blocks
    (written by the run), aside. What a run's update of the page reads first."""
    run_dir, page = Path(run_dir), Path(page)
    folder = run_dir / page.name[:2]
    if not folder.is_dir():
        raise ReportError(f"{page.name}: the run has no notebook {page.name[:2]!r} folder")
    shown, out, inside = shown_values(folder, run_dir), [], False
    for k, line in enumerate(page.read_text().splitlines(), start=1):
        inside = (inside or line.startswith("<!-- run-table ")) and not line.startswith("<!-- /run-table")
        missing = [x for x in DECIMAL.findall(line) if x not in shown]
        if missing and not inside and not ELSEWHERE.search(line):
            out.append(f"{page.name} line {k}: {', '.join(missing)}")
    return out
