"""The shared batch driver: good subjects written, bad ones reported, nothing half-written, re-runs resume."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import zarr
from io_fixtures import copy_acdc, link_acdc, load, nii, truncate

import cmrlib.io.acdc as acdc_mod
from cmrlib.io import ingest
from cmrlib.store import stratified_split
from cmrlib.store import CohortStore

GOOD = ("001", "021", "041")


@pytest.fixture
def mixed(acdc_dir, tmp_path):
    """Three real patients plus three damaged copies (Info.cfg key missing, truncated mask, mask shape mismatch)."""
    root = link_acdc(acdc_dir, tmp_path / "acdc", GOOD)
    d = copy_acdc(acdc_dir, root, "002")
    (d / "Info.cfg").write_text("ED: 1\nGroup: DCM\nHeight: 160\nNbFrame: 30\nWeight: 70\n")
    truncate(sorted(copy_acdc(acdc_dir, root, "003").glob("*_gt.nii.gz"))[0])
    g = sorted(copy_acdc(acdc_dir, root, "004").glob("*_gt.nii.gz"))[1]
    m, z = load(g)
    nii(m[:, :-1], g, z)
    return root


@pytest.fixture
def count_reads(monkeypatch):
    """Count calls of the ACDC per-subject reader (serial ingest runs in this process)."""
    calls = Counter()
    real = acdc_mod.read_acdc_patient

    def counted(folder, subject=None, reference=None):
        calls[subject] += 1
        return real(folder, subject, reference)
    monkeypatch.setattr(acdc_mod, "read_acdc_patient", counted)
    return calls


def _mtimes(store: CohortStore) -> dict:
    return {p: p.stat().st_mtime_ns for p in store.cines_dir.rglob("*") if p.is_file()}


def test_good_written_bad_reported_and_resume(mixed, tmp_path, count_reads):
    out = tmp_path / "cohort"
    store = ingest("acdc", mixed, out, progress=False)
    assert store.ids() == [f"acdc{p}_SAX" for p in GOOD]
    bad = {b["subject"]: b for b in store.report()["bad"]}
    assert {s: b["error"] for s, b in bad.items()} == {
        "acdc002": "MetadataError", "acdc003": "CorruptFileError", "acdc004": "ShapeMismatchError"}
    assert bad["acdc002"]["file"].endswith("Info.cfg") and "ES" in bad["acdc002"]["message"]
    assert bad["acdc003"]["file"].endswith("_gt.nii.gz") and bad["acdc004"]["file"].endswith("_gt.nii.gz")
    assert not list(store.cines_dir.glob(".*")) and len(store.manifest()) == 3
    splits = store.splits()
    assert set(splits) == {f"acdc{p}" for p in GOOD}

    # re-run: finished subjects are neither read nor rewritten; the bad ones are retried
    before, reads_first = _mtimes(store), dict(count_reads)
    store = ingest("acdc", mixed, out, progress=False)
    retried = {s for s, n in count_reads.items() if n > reads_first.get(s, 0)}
    assert retried == {"acdc002", "acdc003", "acdc004"}
    assert _mtimes(store) == before and store.report()["n_already_done"] == 3

    # fix one bad subject: the next run ingests it, and the splits are those of the new subject set (a pure
    # function of the subjects and the seed: what a single run over the same inputs gives)
    (mixed / "patient002" / "Info.cfg").write_text("ED: 1\nES: 12\nGroup: DCM\nHeight: 160\nNbFrame: 30\nWeight: 70\n")
    store = ingest("acdc", mixed, out, progress=False)
    assert "acdc002_SAX" in store and store.report()["n_bad"] == 2
    assert store.splits() == ingest("acdc", mixed, tmp_path / "at_once", progress=False).splits()


def test_failure_mid_write_leaves_nothing(acdc_dir, tmp_path, monkeypatch):
    root = link_acdc(acdc_dir, tmp_path / "acdc", GOOD[:2])
    real = zarr.Group.create_array

    def failing(self, name, *a, **k):
        if name == "labels":
            raise OSError("disk full (simulated)")
        return real(self, name, *a, **k)
    monkeypatch.setattr(zarr.Group, "create_array", failing)
    store = ingest("acdc", root, tmp_path / "cohort", progress=False)
    assert store.ids() == [] and store.report()["n_bad"] == 2
    assert not list(store.cines_dir.iterdir())  # no half-written cine, no leftover temporary folder
    monkeypatch.undo()
    store = ingest("acdc", root, tmp_path / "cohort", progress=False)
    assert len(store) == 2 and store.report()["n_bad"] == 0


def test_workers_match_serial(acdc_dir, tmp_path):
    root = link_acdc(acdc_dir, tmp_path / "acdc", GOOD)
    a = ingest("acdc", root, tmp_path / "serial", progress=False)
    b = ingest("acdc", root, tmp_path / "pool", workers=2, progress=False)
    assert a.ids() == b.ids() and a.splits() == b.splits()
    np.testing.assert_array_equal(a.read("acdc021_SAX").labels, b.read("acdc021_SAX").labels)


def test_limit(acdc_dir, tmp_path):
    root = link_acdc(acdc_dir, tmp_path / "acdc", GOOD)
    assert ingest("acdc", root, tmp_path / "c", limit=2, progress=False).ids() == ["acdc001_SAX", "acdc021_SAX"]


def test_stratified_splits_deterministic():
    subjects = [f"s{i:03d}" for i in range(60)]
    strata = {s: "AB"[i % 2] if i < 40 else "C" for i, s in enumerate(subjects)}
    a, b = stratified_split(strata, seed=3), stratified_split(strata, seed=3)
    assert a == b and a != stratified_split(strata, seed=4)
    for g in "ABC":
        n = Counter(a[s] for s in subjects if strata[s] == g)
        assert (n["train"], n["valid"], n["test"]) == (14, 3, 3)


def test_an_id_collision_between_private_inputs_never_names_the_other_folder(tmp_path):
    from cmrlib.io.batch import check_subjects
    from cmrlib.io.common import Item

    items = [Item(key=k, paths=(tmp_path / k,), subject="ukbb000001", private=True)
             for k in ("DOE_JANE_1234567", "ROE_RICHARD_7654321")]
    ok, bad = check_subjects(items, tmp_path)
    assert not ok and len(bad) == 2
    assert all("another input" in str(b) and "DOE" not in str(b) and "ROE" not in str(b) for b in bad), bad
