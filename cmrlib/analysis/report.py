"""The run's results report and figure index (notebook 09), written from the run folder alone.

`report(run_dir)` is markdown: the run's profile, commit, date and wall times (run.json), every notebook's targets
and its headline tables beside the papers' numbers. `splice_readme` puts it between the result markers of
docs/results.md, so that page states what the latest run measured and nothing typed by hand.
"""
from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..results import ROOT
from ..utils import atomic_write_text

__all__ = ["ReportError", "load_run", "notebook_table", "targets_table", "headlines", "report", "figure_index",
           "splice_readme", "MARKERS"]

MARKERS = ("<!-- results:start (written by `cmrlib report`; edits here are overwritten) -->", "<!-- results:end -->")
# TempReg-Net Table (aFD in frames, ED and ES): the paper's rows beside ours
PAPER_AFD = {"CNN+Reg": (1.30, 1.97), "TempReg-Net w/o TSC": (0.47, 0.52), "TempReg-Net": (0.38, 0.44)}
HEADLINE_MEASURES = ["LVEDV", "LVESV", "LVEF", "LVM", "RVEF", "LAVmax", "MAPSE", "e_prime"]


class ReportError(FileNotFoundError):
    """The run folder lacks what the report needs (run.json), or holds a file the report cannot read or show."""


def load_run(run_dir: str | Path) -> dict:
    """run.json of a run folder; a clear error when the folder holds no run or a damaged one."""
    f = Path(run_dir) / "run.json"
    if not f.exists():
        raise ReportError(f"{f}: no run record (run `cmrlib run` with --out {run_dir} first)")
    try:
        run = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ReportError(f"{f}: not a readable run record ({type(e).__name__})") from None
    if not isinstance(run, dict) or not isinstance(run.get("notebooks", []), list) \
            or not all(isinstance(r, dict) and isinstance(r.get("notebook"), str) for r in run.get("notebooks", [])):
        raise ReportError(f"{f}: not a cmrlib run record")
    return run


def read_table(f: Path) -> pd.DataFrame:
    """A run folder's CSV table; a damaged one is a `ReportError` naming it."""
    try:
        return pd.read_csv(f)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ReportError(f"{f}: not a readable table ({type(e).__name__})") from None


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


def targets_table(run_dir: str | Path) -> pd.DataFrame:
    """Every notebook's targets (`NN/targets.csv`) in one table, with the notebook number."""
    cols = ["notebook", "figure", "value", "goal", "target", "met"]
    parts = [read_table(f).assign(notebook=f.parent.name) for f in sorted(Path(run_dir).glob("[0-9][0-9]/targets.csv"))]
    if not parts:
        return pd.DataFrame(columns=cols)
    bad = [c for c in cols if not all(c in p for p in parts)]
    if bad:
        raise ReportError(f"{run_dir}: a targets.csv lacks column(s) {bad}")
    return pd.concat(parts, ignore_index=True)[cols]


def _read(run_dir: Path, rel: str) -> pd.DataFrame | None:
    f = run_dir / rel
    return read_table(f) if f.exists() else None


def _segmentation(run: Path):
    if (d := _read(run, "01/dice_phantom.csv")) is not None:
        d = d[d["phase"] == "all"].pivot_table(index="view", columns="structure", values="dice_mean")
        yield "01 · segmentation: phantom test Dice (every frame)", d.round(3).reset_index()
    acdc = [(name, d) for name, rel in (("ACDC-trained", "01/dice_acdc.csv"), ("phantom-trained", "01/dice_sim2real.csv"))
            if (d := _read(run, rel)) is not None]
    if acdc:
        d = pd.concat([d.assign(model=name) for name, d in acdc])
        d = d.pivot_table(index=["model", "phase"], columns="structure", values="dice_mean").round(3).reset_index()
        yield "01 · segmentation: ACDC held-out Dice (ED, ES)", d


def _edes(run: Path):
    if (d := _read(run, "02/afd_table.csv")) is not None:
        d = d[d["view"] == "all"][["method", "n", "aFD_ED", "aFD_ES"]].copy()
        d["paper aFD_ED"] = d["method"].map(lambda m: PAPER_AFD.get(m, (np.nan,))[0])
        d["paper aFD_ES"] = d["method"].map(lambda m: PAPER_AFD.get(m, (np.nan, np.nan))[1])
        yield "02 · ED/ES frames: average absolute frame difference (phantom test, all views)", d.round(2)


def _mvnet(run: Path):
    if (d := _read(run, "03/agreement_by_stage.csv")) is not None:
        yield ("03 · MVnet: agreement with observer 1 per stage (phantom test)",
               d[["measure", "unit", "n", "bias", "loa_low", "loa_high", "mae", "icc2"]].round(3))


def _cussp(run: Path):
    if (d := _read(run, "04/table2.csv")) is not None:
        yield ("04 · CUSSP: MR classification on the test split (95 % bootstrap CI; threshold chosen on validation), "
               "beside the paper's Table 2", d)
    if (d := _read(run, "04/pool_curve.csv")) is not None:
        d = d[d["metric"].isin(["f1", "roc_auc"])].pivot_table(index="pool_cines", columns="metric",
                                                                values="value").round(3).reset_index()
        yield "04 · CUSSP-SIAM-25 as the unlabelled pool grows (test F1, ROC-AUC)", d


def _sslhf(run: Path):
    for name in ("I", "II", "III"):
        if (d := _read(run, f"05/table_{name}.csv")) is not None:
            yield (f"05 · SSLHF Table {name}: HFrEF vs HFpEF, mean over five test folds (95 % CI), beside the "
                   "paper's values", d)
    if (d := _read(run, "05/differences.csv")) is not None:
        yield "05 · SSLHF minus each row, patient-level AUC fold by fold (95 % CI)", d.round(3)


def _heartmae(run: Path):
    if (d := _read(run, "06/table1.csv")) is not None:
        yield "06 · HeartMAE Table 1: EF mean absolute error (EF points, 95 % CI), beside the paper's", d
    if (d := _read(run, "06/wins.csv")) is not None:
        w = _read(run, "06/wilcoxon.csv")
        yield ("06 · cardiac measures each MAE model predicts best (Fig. S1)"
               + ("" if w is None else f"; HeartMAE vs MAE-ViT-B: lower scaled MAE on {int(w['a_better'][0])} of "
                  f"{int(w['tasks'][0])}, Wilcoxon p = {w['p'][0]:.3g}"), d)
    for metric in ("AP", "AUROC"):
        if (d := _read(run, f"06/conditions_{metric}.csv")) is not None:
            yield f"06 · conditions: {metric} per model on the test subjects (95 % CI; Fig. 2)", d
    if (d := _read(run, "06/table2.csv")) is not None:
        yield "06 · HeartMAE Table 2: extracardiac MAE (95 % CI) and Pearson r, beside the paper's", d


def _agreement(run: Path):
    if (d := _read(run, "07/agreement.csv")) is not None:
        d = d[d["measure"].isin(HEADLINE_MEASURES)]
        cols = ["cohort", "measure", "method", "n", "bias", "loa_low", "loa_high", "icc2", "ccc", "mae"]
        yield "07 · agreement with the reference, headline measures", d[cols].round(3)


def _clusters(run: Path):
    if (d := _read(run, "08/rand_indices.csv")) is not None:
        yield "08 · clusters (AF against healthy): adjusted Rand index", d.round(3)


HEADLINES: list[Callable[[Path], object]] = [_segmentation, _edes, _mvnet, _cussp, _sslhf, _heartmae,
                                                 _agreement, _clusters]


def headlines(run_dir: str | Path) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) of every headline table the run folder has, in notebook order."""
    return [t for h in HEADLINES for t in h(Path(run_dir))]


def cell(v):
    """A value as it may stand in a markdown table: HTML escaped, `|` escaped, on one line; a cell holding one of
    the README's markers is refused (it would make the block impossible to find again)."""
    if not isinstance(v, str):
        return v
    if any(m in v for m in MARKERS) or "results:start" in v or "results:end" in v:
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


def _of_budget(nbs: pd.DataFrame) -> str:
    """' (budget N min)' when every notebook of the run has a budget."""
    budgets = pd.to_numeric(nbs["budget"], errors="coerce")
    return f" (budget {budgets.sum():g} min)" if len(nbs) and budgets.notna().all() else ""


def report(run_dir: str | Path) -> str:
    """The results report of a run folder as markdown."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    nbs = notebook_table(run)
    tg = targets_table(run_dir)
    lines = [f"Profile `{cell(str(run.get('profile')))}`, commit `{(run.get('git_commit') or '')[:7]}`, started "
             f"{run.get('started', '')[:10]}; {nbs['minutes'].sum():.1f} min of notebooks{_of_budget(nbs)} "
             f"(`cmrlib run --profile {run.get('profile')}`; this report: `cmrlib report {_shown(run_dir)}`).", "",
             _md(nbs), ""]
    if len(tg):
        tg = tg.assign(met=tg["met"].map({True: "yes", False: "**no**"}), value=tg["value"].round(3))
        lines += [f"**Targets**: {int((tg['met'] == 'yes').sum())} of {len(tg)} met.", "", _md(tg), ""]
    for title, table in headlines(run_dir):
        lines += [f"**{cell(title)}**", "", _md(table), ""]
    return "\n".join(lines).rstrip() + "\n"


EXTRA_CAPTIONS = "captions.json"  # in the figures folder: {stem: {caption, notebook, file}} of figures no notebook drew


def figure_index(run_dir: str | Path, figures_dir: str | Path) -> str:
    """figures/README.md: one line per figure in the folder with its caption, notebook and the run's commit."""
    run_dir, figures_dir = Path(run_dir), Path(figures_dir)
    run = load_run(run_dir)
    commits = {r["notebook"][:2]: (r.get("git_commit") or "")[:7]
               for r in run.get("notebooks", [])}
    captions = {}
    for f in sorted(run_dir.glob("[0-9][0-9]/figures.json")) + [figures_dir / EXTRA_CAPTIONS]:
        if f.is_file():  # EXTRA_CAPTIONS: figures drawn outside the notebooks (the report's picture)
            captions.update(json.loads(f.read_text()))
    rows = []
    for png in sorted(figures_dir.rglob("*.png")):
        rel = png.relative_to(figures_dir)
        info = captions.get(png.stem, {}) if rel.parent == Path(".") else {}
        nb = info.get("notebook", "09" if rel.parent.name == "paper" else png.stem[:2])
        if rel.parent.name == "paper":
            info = dict(caption=f"paper style (PNG + PDF) of {captions.get(png.stem, {}).get('caption', png.stem)}")
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


def splice_readme(readme: str | Path, text: str) -> Path:
    """Replace what lies between the README's result markers with `text` (atomically); an error unless the README
    holds each marker exactly once, in order, and `text` holds neither."""
    readme = Path(readme)
    s = readme.read_text()
    start, end = MARKERS
    if s.count(start) != 1 or s.count(end) != 1 or s.index(start) > s.index(end):
        raise ReportError(f"{readme}: needs each results marker once, in order ({start!r} ... {end!r})")
    if start in text or end in text:
        raise ReportError("the report holds a results marker: refused")
    head, rest = s.split(start, 1)
    tail = rest.split(end, 1)[1]
    return atomic_write_text(readme, f"{head}{start}\n{text.rstrip()}\n{end}{tail}")
