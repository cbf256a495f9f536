"""The cohort store and the run folder against a hostile or damaged folder, one test (or more) per finding: 1 links
planted inside that lead out, 2 damaged state repaired, 3 splits that must not drift, 4 a run folder mixing
cohorts, 5 identifiers in failure messages, 6 the report scrubbed by structure, 7 leftovers (a silent scheduler,
a zero-byte NIfTI, path parameters passed as references). Everything is built under the test's tmp_path; no network."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmrlib import cli, runner
from cmrlib.io import CorruptFileError, ingest, read_nifti_cine
from cmrlib.io.batch import scrub
from cmrlib.io.common import Item
from cmrlib.phantom import make_cohort
from cmrlib.store import CohortMismatch, CohortStore, StoreError
from test_io_hostile import cine_4ch, dicom_cine, nifti

PHANTOM = dict(n_frames=4, matrix=32, pixel_mm=8.0, views=("4CH",), progress=False)


def source(root: Path, n: int = 3) -> Path:
    """n tiny 4CH NIfTI subjects."""
    for i in range(n):
        nifti(root / f"s{i:02d}" / "la_4ch.nii.gz", cine_4ch())
    return root


def outside_untouched(before: dict[Path, bytes], root: Path) -> bool:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------- 1. links planted inside the cohort


@pytest.mark.parametrize("planted", [".lock", "manifest", "splits.csv", "report.json", ".ingest/nifti"])
def test_1_a_link_inside_the_cohort_that_leads_out_is_refused_not_followed(tmp_path, planted):
    src = source(tmp_path / "in")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    out = tmp_path / "cohort"
    ingest("nifti", src, out, progress=False)
    link = out / planted
    if link.is_dir():
        shutil.rmtree(link)
    elif link.exists():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere if planted in ("manifest", ".ingest/nifti") else elsewhere / "precious.txt")
    before = {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}
    nifti(src / "s99" / "la_4ch.nii.gz", cine_4ch())  # something new to write
    with pytest.raises(StoreError, match="leads outside the cohort folder"):
        ingest("nifti", src, out, progress=False)
    assert outside_untouched(before, elsewhere)
    assert cli.main(["ingest", "nifti", str(src), "--out", str(out)]) == 2


def test_1_a_temporary_that_is_a_link_out_is_not_cleaned_through(tmp_path):
    src = source(tmp_path / "in", 1)
    out = tmp_path / "cohort"
    ingest("nifti", src, out, progress=False)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "x.bin").write_bytes(b"1")
    (out / "cines" / ".trap.zarr.0.tmp").symlink_to(elsewhere / "data")
    ingest("nifti", src, out, progress=False)
    assert (elsewhere / "data" / "x.bin").exists()  # the link was removed, not what it points to


# ---------------------------------------------------------------- 2. damaged state is repaired


def test_2_a_cine_missing_its_pixels_is_ingested_again(tmp_path):
    src = source(tmp_path / "in")
    out = tmp_path / "cohort"
    store = ingest("nifti", src, out, progress=False)
    shutil.rmtree(out / "cines" / "s01_4CH.zarr" / "pixels")
    assert not store.intact("s01_4CH") and store.intact("s00_4CH")
    store = ingest("nifti", src, out, progress=False)
    assert store.intact("s01_4CH") and store.report()["n_already_done"] == 2 and store.report()["n_ingested"] == 1
    assert store.read("s01_4CH").pixels.shape == (6, 16, 16)


def test_2_a_corrupt_manifest_part_or_splits_file_is_rebuilt(tmp_path):
    src = source(tmp_path / "in")
    out = tmp_path / "cohort"
    store = ingest("nifti", src, out, progress=False)
    want_manifest, want_splits = store.manifest(), store.splits()
    for part in (out / "manifest").glob("part-*.parquet"):
        part.write_bytes(b"PAR1 not parquet at all")
    pd.testing.assert_frame_equal(CohortStore(out).manifest(), want_manifest)  # rebuilt from the cines
    (out / "splits.csv").write_text("subject,split\ns00,holiday\n")
    with pytest.raises(StoreError, match="splits.csv is damaged"):
        CohortStore(out).splits()
    assert ingest("nifti", src, out, progress=False).splits() == want_splits


# ---------------------------------------------------------------- 3. splits never drift


def test_3_a_deleted_manifest_part_hides_nothing(tmp_path):
    src = source(tmp_path / "in", 10)
    out = tmp_path / "cohort"
    store = ingest("nifti", src, out, progress=False)
    splits = store.splits()
    assert len(splits) == 10
    part = CohortStore(out)._parts()[0]
    part.unlink()
    assert len(CohortStore(out).manifest()) == 10
    assert ingest("nifti", src, out, progress=False).splits() == splits


KILLED = """
import sys, time
from cmrlib.io import ingest
from cmrlib.store import CohortStore

if __name__ == "__main__":
    write = CohortStore.write

    def slow(self, cine, **kw):  # every cine takes a while, so a kill lands mid-write as on a big cohort
        time.sleep(float(sys.argv[3]))
        return write(self, cine, **kw)

    CohortStore.write = slow
    print("ready", flush=True)
    ingest("nifti", sys.argv[1], sys.argv[2], progress=False)
"""


def killed_runs(src: Path, out: Path, kills: int, per_cine_s: float, seed: int) -> list[int]:
    """Ingest `src` into `out`, killed with SIGKILL `kills` times at random moments; the cines on disk after each."""
    script = out.parent / "ingest.py"
    script.write_text(KILLED)
    g, left = np.random.default_rng(seed), []
    n = len(list(src.iterdir()))
    for _ in range(kills):
        p = subprocess.Popen([sys.executable, str(script), str(src), str(out), str(per_cine_s)],
                             stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        time.sleep(g.uniform(0, n * per_cine_s))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        left.append(len(list((out / "cines").glob("*.zarr"))) if (out / "cines").exists() else 0)
    return left


def snapshot(root: Path) -> tuple[dict, dict, pd.DataFrame]:
    """The store's content: every cine file's bytes, the splits, the manifest (part names and report timings
    differ run to run by design)."""
    cines = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / "cines").rglob("*"))
             if p.is_file()}
    store = CohortStore(root)
    return cines, store.splits(), store.manifest().drop(columns=[], errors="ignore")


def test_3_kill_9_at_random_points_then_resume_gives_the_uninterrupted_store(tmp_path):
    """12 subjects, killed at three random moments, then run to the end: the same cines (byte for byte), splits and
    manifest as one uninterrupted run (measured at 100 subjects for the README)."""
    src = source(tmp_path / "in", 12)
    whole = ingest("nifti", src, tmp_path / "whole", progress=False)
    out = tmp_path / "killed"
    left = killed_runs(src, out, kills=3, per_cine_s=0.15, seed=7)
    assert left[0] < 12  # the first kill came before the end
    resumed = ingest("nifti", src, out, progress=False)
    a, b = snapshot(whole.root), snapshot(resumed.root)
    assert a[0] == b[0] and a[1] == b[1]
    assert (whole.root / "splits.csv").read_bytes() == (resumed.root / "splits.csv").read_bytes()
    pd.testing.assert_frame_equal(a[2], b[2])
    assert not list(out.rglob(".*.tmp"))


def test_3_splits_are_a_pure_function_of_the_subjects_whatever_the_order(tmp_path):
    src = source(tmp_path / "in", 9)
    at_once = ingest("nifti", src, tmp_path / "a", progress=False).splits()
    staged = tmp_path / "staged"
    for i in (7, 2, 5):  # subjects arrive in another order, over several runs
        shutil.copytree(src / f"s{i:02d}", staged / f"s{i:02d}")
        ingest("nifti", staged, tmp_path / "b", progress=False)
    for d in src.iterdir():
        if not (staged / d.name).exists():
            shutil.copytree(d, staged / d.name)
    assert ingest("nifti", staged, tmp_path / "b", progress=False).splits() == at_once


# ---------------------------------------------------------------- 4. one cohort per run folder


def test_4_another_source_into_an_existing_cohort_is_refused(tmp_path):
    out = tmp_path / "run" / "cohort"
    make_cohort(out, n=3, seed=0, **PHANTOM)
    with pytest.raises(CohortMismatch, match="already holds phantom cines"):
        ingest("nifti", source(tmp_path / "in"), out, progress=False)
    with pytest.raises(CohortMismatch, match="phantom cines made with other settings"):
        make_cohort(out, n=3, seed=1, **PHANTOM)
    make_cohort(out, n=4, seed=0, **PHANTOM)  # the same recipe grows
    assert len(CohortStore(out)) == 4


def test_4_a_notebooks_own_derived_cohort_is_made_afresh_for_another_recipe(tmp_path):
    out = tmp_path / "pool"
    make_cohort(out, n=2, seed=0, **PHANTOM)
    before = CohortStore(out).fingerprint()
    make_cohort(out, n=2, seed=3, renew=True, **PHANTOM)
    assert CohortStore(out).identity()["seed"] == 3 and CohortStore(out).fingerprint() != before


def test_4_the_fingerprint_follows_source_cines_and_splits(tmp_path):
    store = make_cohort(tmp_path / "c", n=3, seed=0, **PHANTOM)
    fp = store.fingerprint()
    assert fp == CohortStore(tmp_path / "c").fingerprint() and len(fp) == 16
    make_cohort(tmp_path / "c", n=4, seed=0, **PHANTOM)
    assert CohortStore(tmp_path / "c").fingerprint() != fp
    other = make_cohort(tmp_path / "d", n=3, seed=1, **PHANTOM)
    assert other.fingerprint() != fp


# ---------------------------------------------------------------- 5. identifiers in failure messages


def test_5_a_missing_users_file_is_named_by_its_reference_in_every_record(tmp_path):
    private = tmp_path / "MUELLER_HANS_1944" / "labels.csv"  # never created
    env: dict[str, str] = {}
    params = runner.path_references({"labels_csv": str(private)}, env)
    (var,) = [k for k in env if k.startswith("CMRLIB_PATH_")]
    message = f"FileNotFoundError: [Errno 2] No such file or directory: '{private}'"
    red = runner.redact(message, env)
    assert "MUELLER" not in red and f"${var}" in red and params["labels_csv"] == f"${var}"
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [{"outputs": [{"evalue": message, "traceback": [message]}]}]}))
    runner.redact_notebook(nb, env)
    assert "MUELLER" not in nb.read_text() and f"${var}" in nb.read_text()


# ---------------------------------------------------------------- 6. the report scrubbed by structure


@pytest.mark.parametrize("key", ["2", "e", "subject", "MÜLLER^HANS"])
def test_6_scrub_replaces_the_key_by_structure_not_by_substring(key):
    item = Item(key=key, paths=(Path(key),), subject="sub000002", private=True)
    row = {"subject": "sub000002", "file": f"{key}/IM003.dcm", "error": "CorruptFileError",
           "message": f"{key}/IM003.dcm: frame 2 of 20 is truncated (subject {key})"}
    out = scrub(row, item)
    assert set(out) == set(row) and out["subject"] == "sub000002" and out["error"] == "CorruptFileError"
    assert out["file"] == "sub000002/IM003.dcm"
    if len(key) >= 3:
        assert key not in out["message"] and "frame 2 of 20" in out["message"]
    else:  # a key this short identifies no one: the message keeps its numbers and words
        assert out["message"] == row["message"]


@pytest.mark.parametrize("folder", ["2", "e"])
def test_6_subject_folders_named_like_a_digit_or_a_letter_keep_the_report_whole(tmp_path, capsys, folder):
    src = tmp_path / "in"
    dicom_cine(src / folder)
    dicom_cine(src / "zz_intact")
    (src / folder / "IM003.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    out = tmp_path / "c"
    assert cli.main(["ingest", "dicom", str(src), "--out", str(out), "--pseudonyms", str(tmp_path / "ids.csv")]) == 0
    (bad,) = json.loads((out / "report.json").read_text())["bad"]
    assert set(bad) >= {"subject", "file", "error", "message"} and bad["subject"] == "sub000001"
    assert bad["file"] == "file 4 of 8"
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------- 7. leftovers


def test_7_a_zero_byte_nifti_is_a_typed_error_naming_the_file(tmp_path):
    empty = tmp_path / "subject" / "la_4ch.nii.gz"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="la_4ch.nii.gz: cannot read the NIfTI header"):
        read_nifti_cine(empty, view="4CH")


def test_7_a_scheduler_that_accepts_but_never_answers_is_one_line_within_the_timeout(tmp_path, capsys):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(4)), daemon=True).start()
    t0 = time.perf_counter()
    code = cli.main(["ingest", "nifti", str(source(tmp_path / "in", 1)), "--out", str(tmp_path / "c"),
                     "--scheduler", f"tcp://127.0.0.1:{server.getsockname()[1]}"])
    took = time.perf_counter() - t0
    server.close()
    assert code == 2 and took < 30, took
    assert "no Dask scheduler answers" in capsys.readouterr().err
    assert not (tmp_path / "c" / "cines").exists()


def test_7_every_path_parameter_the_runner_passes_as_a_reference_is_expanded_by_its_study():
    from cmrlib.predictor import METHODS, study_class

    for method in METHODS:
        study = study_class(method)
        passed = {k for k in study.PARAMS if runner.is_path_param(k)} - set(runner.INJECTED) - {"data_dir"}
        assert passed <= set(study.PATHS), f"{method}: {sorted(passed - set(study.PATHS))} reach it unexpanded"

def test_a_special_file_as_the_lock_is_refused_never_waited_on(tmp_path):
    store = CohortStore(tmp_path / "cohort")
    store.root.mkdir()
    os.mkfifo(store.root / ".lock")
    with pytest.raises(StoreError, match="lock file"):
        with store.writer():
            pass
