"""Command line: `cmrlib run` executes the notebooks, `cmrlib ingest` builds a cohort from real data, `cmrlib fit`
trains one method (alone or under `accelerate launch`), `cmrlib analyse` reports one patient with every method
of a run, `cmrlib validate` calibrates a run's segmenter on a site's own contoured patients, `cmrlib figures`
re-runs notebook 09 on a finished run,
`cmrlib report` prints (or splices into docs/results.md) a run's results."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import runner
from .predictor import METHODS


def _run(a) -> int:
    overrides = runner.parse_overrides(a.p)
    if a.scheduler:
        overrides["scheduler"] = a.scheduler
    path = runner.run(a.profile, a.only, overrides, a.out, a.figures)
    print(f"run record: {path}")
    return 0


def _figures(a) -> int:
    path = runner.rerun(a.run_dir, ["09"], a.figures)
    print(f"run record: {path}")
    return 0


def _report(a) -> int:
    from .analysis import report

    if a.check:
        drifted = [line for page in a.check for line in report.drift(a.run_dir, page)]
        for line in drifted:
            print(line)
        print(f"{len(drifted)} line(s) differ from run {Path(a.run_dir).name}"
              if drifted else f"every marked block is run {Path(a.run_dir).name}'s")
        return 1 if drifted else 0
    if a.trace:
        lines = [line for page in a.trace for line in report.untraced(a.run_dir, page)]
        print("\n".join(lines) if lines else "every number of these pages is in the run's tables")
        print(f"{len(lines)} line(s) hold a number the run's tables do not")
        return 1 if lines else 0
    for page in a.readme or []:
        print(f"results written into {report.fill(a.run_dir, page)}")
    if not a.readme:
        print(report.report(a.run_dir), end="")
    return 0


def _analyse(a) -> int:
    from .analyse import AnalyseError, analyse
    from .analyse_batch import analyse_cohort, is_cohort

    from .io.exam import parse_overrides

    views = parse_overrides(a.view) if a.view else None
    if a.cohort or is_cohort(a.patient):
        if a.sex or a.height or a.weight or views:
            raise AnalyseError("--sex, --height, --weight and --view are one patient's; a cohort's come from its "
                               "files")
        analyse_cohort(a.patient, a.run, a.out, skip_broken=a.skip_broken, force=a.force)
    else:
        analyse(a.patient, a.run, a.out, skip_broken=a.skip_broken, force=a.force, sex=a.sex, height_cm=a.height,
                weight_kg=a.weight, views=views)
    return 0


def _validate(a) -> int:
    from .validate import validate

    validate(a.cohort, a.run, a.out, a.reference, fine_tune=a.fine_tune)
    return 0


def _fit(a) -> int:
    from .fit import fit, row_name

    rec = fit(a.method, a.profile, a.run, runner.parse_overrides(a.p), a.out, a.rows)
    from .distributed import rank

    if rank() == 0:  # the other processes would print the same lines
        for r in (r for r in rec["rows"] if r.get("valid_loss") is not None):  # a failed row has none
            print(f"{a.method}: {row_name(r)}: validation loss {r['valid_loss']:.4f} "
                  f"({rec['processes']} process(es), per process: "
                  f"{', '.join(f'{k} {v}' for k, v in rec['batch_per_process'].items())})")
    return 0


SHOW_BAD = 20  # bad items printed one per line; the rest are counted (all are in report.json)


def _ingest(a) -> int:
    from .io import ingest

    from .io import IngestError

    if a.view and a.source != "dicom":
        raise IngestError("--view", "names DICOM series: give it with the dicom source")
    store = ingest(a.source, a.path, a.out, pseudonym_file=a.pseudonyms, workers=a.workers,
                   scheduler=a.scheduler, **({"views": a.view} if a.view else {}))
    rep = store.report()
    bad = rep.get("bad", [])
    for b in bad[:SHOW_BAD]:
        print(f"bad: {b.get('subject')}: {b['file']}: {b['error']}: {b['message']}", file=sys.stderr)
    if len(bad) > SHOW_BAD:
        print(f"... and {len(bad) - SHOW_BAD} more bad item(s)", file=sys.stderr)
    print(f"{store}: {rep.get('n_ingested', 0)} subject(s) ingested, {rep.get('n_already_done', 0)} already done, "
          f"{len(bad)} bad; report: {store.root / 'report.json'}")
    if rep.get("n_ingested", 0) + rep.get("n_already_done", 0) == 0:
        print("cmrlib: error: nothing was ingested", file=sys.stderr)
        return 1
    return 0


def _positive(text: str) -> int:
    """A count of at least 1 (argparse says which option and value otherwise)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def parser() -> argparse.ArgumentParser:
    from .io import SOURCES

    ap = argparse.ArgumentParser(prog="cmrlib", description=__doc__, allow_abbrev=False)
    sub = ap.add_subparsers(dest="cmd", required=True)
    # no abbreviations: "--p k=v" must not silently become "--profile k=v"
    r = sub.add_parser("run", help="execute the numbered notebooks with a profile", allow_abbrev=False)
    r.add_argument("--profile", default="smoke", help=f"one of: {', '.join(runner.profiles())}, or your own .yaml")
    r.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers to run, e.g. --only 00 01")
    r.add_argument("-p", action="append", metavar="KEY=VALUE", help="override a notebook parameter")
    r.add_argument("--out", help="run folder (default runs/<profile>)")
    r.add_argument("--figures", help="figure folder (default <out>/figures)")
    r.add_argument("--scheduler", help="run the notebooks' data-parallel steps on this Dask scheduler (address or "
                                       "scheduler file; 'local' for a LocalCluster of `workers` processes)")
    r.set_defaults(fn=_run)
    f = sub.add_parser("figures", help="re-run notebook 09 (figures, index, report) on a finished run",
                       allow_abbrev=False)
    f.add_argument("run_dir", help="a run folder (with run.json)")
    f.add_argument("--figures", help="figure folder (default: the run's own)")
    f.set_defaults(fn=_figures)
    rp = sub.add_parser("report", help="a run's results as markdown", allow_abbrev=False)
    rp.add_argument("run_dir", help="a run folder (with run.json)")
    rp.add_argument("--readme", nargs="+", metavar="PAGE",
                    help="write the report between the results markers, the results table between the glance "
                         "markers, the minutes between the timing markers and each run-table block's table of these "
                         "pages (docs/results.md, README.md, docs/running.md, docs/notebooks/NN_*.md) instead of "
                         "printing it")
    rp.add_argument("--check", nargs="+", metavar="PAGE",
                    help="name every line between these pages' markers that differs from what the run writes "
                         "there (exit 1 when any does); writes nothing")
    rp.add_argument("--trace", nargs="+", metavar="PAGE",
                    help="name every line of these notebook pages (docs/notebooks/NN_*.md) holding a decimal number "
                         "that no table of the run's notebook NN holds (lines naming another commit or a bench aside): "
                         "what to read when a run updates the pages; writes nothing")
    rp.set_defaults(fn=_report)
    t = sub.add_parser("fit", help="train one method with a profile (under `accelerate launch`: on N GPUs or CPU "
                                   "processes)", allow_abbrev=False)
    t.add_argument("method", help=" | ".join(METHODS))
    t.add_argument("--profile", default="smoke", help=f"one of: {', '.join(runner.profiles())}, or your own .yaml")
    t.add_argument("--run", help="the run folder whose cohort it trains on (default runs/<profile>)")
    t.add_argument("--out", help="where models and fit.json go (default <run>/fit/<method>)")
    t.add_argument("-p", action="append", metavar="KEY=VALUE", help="override a parameter of the method's notebook")
    t.add_argument("--rows", type=int, help="heartmae: pretrain only the first N rows of its family")
    t.set_defaults(fn=_fit)
    an = sub.add_parser("analyse", help="one patient's cines through every method of a run: an HTML report",
                        allow_abbrev=False)
    an.add_argument("patient", help="the patient's folder (DICOM, NIfTI cines, UK Biobank zips or an ACDC patient), or "
                                    "a cohort's folder with one such sub-folder per subject")
    an.add_argument("--run", required=True, help="a run folder whose predictors/ the notebooks wrote")
    an.add_argument("--out", required=True, help="the report's folder (report.html, measures.csv, report.json): a new "
                                                 "or empty folder outside the patient's and the run's folders")
    an.add_argument("--force", action="store_true", help="replace the cmrlib report --out already holds (a cohort: "
                                                         "redo every subject)")
    an.add_argument("--cohort", action="store_true", help="read the folder as one subject per sub-folder (found by "
                                                          "itself for ACDC, NIfTI and UK Biobank folders; DICOM "
                                                          "cohorts need it)")
    an.add_argument("--sex", choices=("male", "female"), help="for the normal ranges (else the DICOM header's)")
    an.add_argument("--height", type=float, metavar="CM", help="height in cm, with --weight: BSA-indexed measures")
    an.add_argument("--weight", type=float, metavar="KG", help="weight in kg")
    an.add_argument("--view", action="append", metavar="SERIES=VIEW", help="a DICOM series' view over the sorting "
                    "rules (SAX, 2CH, 3CH, 4CH, other or skip), by series number as the report's series table shows it")
    an.add_argument("--skip-broken", action="store_true", help="report without the predictors that cannot be "
                                                              "opened (named on stderr and in the report)")
    an.set_defaults(fn=_analyse)
    va = sub.add_parser("validate", help="a site's own contoured patients against a run's segmenter: agreement, "
                        "and a new run folder whose intervals are calibrated on them", allow_abbrev=False)
    va.add_argument("cohort", help="a folder with one sub-folder per patient (any folder `cmrlib analyse` reads)")
    va.add_argument("--run", required=True, help="the run folder whose segmenter is validated (left untouched)")
    va.add_argument("--out", required=True, help="a new folder: the validated run (its predictors, validation/)")
    va.add_argument("--reference", metavar="CSV", help="reference values by folder name (columns: patient, and any "
                    "of LVEDV, LVESV, LVSV, LVEF, LVM, RVEDV, RVESV, RVSV, RVEF); else the SAX masks at ED and ES")
    va.add_argument("--fine-tune", action="store_true", help="also adapt the SAX segmenter on the patients' ED and "
                    "ES masks (5-fold cross-validation inside the cohort says what it changes; minutes on a CPU)")
    va.set_defaults(fn=_validate)
    g = sub.add_parser("ingest", help="ingest a real data source into a cohort store", allow_abbrev=False)
    g.add_argument("source", choices=SOURCES, help=" | ".join(SOURCES))
    g.add_argument("path", help="the source folder")
    g.add_argument("--out", required=True, help="cohort folder to write")
    g.add_argument("--pseudonyms", help="file (yours, kept private) mapping real IDs to pseudonyms")
    g.add_argument("--workers", type=_positive, default=1, help="Dask worker processes of a local cluster (1: this process)")
    g.add_argument("--scheduler", help="a Dask scheduler address (tcp://host:8786) or scheduler file (*.json)")
    g.add_argument("--view", action="append", metavar="SERIES=VIEW", help="dicom: a series' view over the sorting "
                   "rules (SAX, 2CH, 3CH, 4CH, other or skip), by series number (report.json lists every series)")
    g.set_defaults(fn=_ingest)
    return ap


def _user_errors() -> tuple[type[Exception], ...]:
    """Mistakes a user can fix from the message alone: printed as one line, exit code 2, no traceback."""
    from .analyse import AnalyseError
    from .analysis.report import ReportError
    from .predictor import PredictorError
    from .dask_tasks import SchedulerUnreachable
    from .fit import FitError
    from .io import IngestError, PseudonymError
    from .params import ParamError
    from .runfiles import RunFileError
    from .store import StoreBusyError, StoreError
    from .tables import TableError

    return (runner.RunError, runner.NotebookFailed, IngestError, PseudonymError, StoreBusyError, StoreError,
            ReportError, SchedulerUnreachable, AnalyseError, PredictorError, FitError, ParamError, TableError,
            RunFileError)


PATH_OPTIONS = ("out", "figures", "run", "run_dir", "patient", "cohort", "path", "reference", "pseudonyms", "readme",
                "check", "profile")  # the options that name a file or folder (or a list of them)


def check_paths(a) -> None:
    """Refuse a path option the file system cannot take (a NUL byte, a name over its length limit) in one line,
    naming the option, before anything runs."""
    import os

    given = [(dest, v) for dest in PATH_OPTIONS for v in (lambda x: x if isinstance(x, list) else [x])(
        getattr(a, dest, None))]
    for dest, v in given:
        if not isinstance(v, str):
            continue
        option = dest if dest in ("patient", "cohort", "path", "run_dir") else f"--{dest.replace('_', '-')}"
        if "\0" in v:
            raise runner.RunError(f"{option}: a path with a NUL byte")
        size = max([len(part.encode()) for part in v.split(os.sep) if len(part.encode()) > 255] or [0])
        if size or len(v.encode()) > 4095:
            raise runner.RunError(f"{option}: a name longer than the file system allows "
                                  f"({size or len(v.encode())} bytes)")


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    try:
        check_paths(a)
        return a.fn(a)
    except _user_errors() as e:
        print(f"cmrlib: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
