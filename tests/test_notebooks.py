"""Every numbered notebook runs end to end with the smoke profile, handing files to the next."""
from __future__ import annotations

import json

import pytest

from cmrlib import runner
from cmrlib.store import CohortStore

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("notebooks")]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    try:
        path = runner.run("smoke", out=out)
    except runner.NotebookFailed as e:
        pytest.fail(str(e))
    return out, json.loads(path.read_text())


def test_every_notebook_ran(smoke_run):
    out, rec = smoke_run
    assert rec["status"] == "ok"
    assert [r["notebook"] for r in rec["notebooks"]] == [p.name for p in runner.discover()]
    assert all(r["status"] == "ok" for r in rec["notebooks"])


def test_each_notebook_leaves_a_figure(smoke_run):
    out, rec = smoke_run
    for r in rec["notebooks"]:
        nn = r["notebook"][:2]
        assert list((out / "figures").glob(f"{nn}_*.png")), f"{r['notebook']} wrote no figure"


def test_cohort_has_splits_and_manifest(smoke_run):
    out, _ = smoke_run
    store = CohortStore(out / "cohort")
    m = store.manifest()
    assert len(store) > 0 and set(m["split"]) <= {"train", "valid", "test"} and m["split"].notna().all()
