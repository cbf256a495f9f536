"""Dask for the data-parallel steps: the same results as in one process, a failing item reported with its error,
a worker killed mid-ingest costing no finished subject, an unreachable scheduler as one clear line."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import sys
import threading
import time

import numpy as np
import pytest
import torch

from cmrlib import cli
from cmrlib.dask_tasks import SchedulerUnreachable, client, map_tasks, wants_dask
from cmrlib.io import ingest
from cmrlib.phantom import make_cohort
from cmrlib.store import CohortStore

from io_fixtures import link_acdc


@pytest.fixture(scope="module")
def dask_client():
    with client("local", workers=2) as c:
        yield c


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three is refused")
    return x * x


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_in_process_unless_asked():
    assert not wants_dask(None, 1) and wants_dask(None, 2) and wants_dask("tcp://h:8786", 1)
    with client(None, 1) as c:
        assert c is None


def _sizing_leaves_the_global_random(seed: int) -> bool:
    """Whether Dask's size estimate of long lists and tuples leaves Python's global random state where it was."""
    from dask.sizeof import sizeof
    random.seed(seed)
    want = random.random()
    random.seed(seed)
    sizeof([list(range(50))] * 40), sizeof(tuple(range(100)))
    return random.random() == want


def test_dask_sizes_long_lists_without_the_global_random(dask_client):
    """Dask's event loop sizes every message and result while a fit in the same process draws from the global
    `random` (fastai's batch order): in this process, holding a client, and in its workers, it draws elsewhere."""
    from dask.sizeof import sizeof
    assert _sizing_leaves_the_global_random(0)
    got = [res for _, res, err in map_tasks(_sizing_leaves_the_global_random, range(2), dask_client, progress=False)]
    assert got == [True, True]
    assert sizeof([b"x" * 100] * 50) == sys.getsizeof([b"x"] * 50) + 50 * 100  # Dask's estimate, unchanged
    assert sizeof((b"ab", b"c")) == sys.getsizeof((b"ab", b"c")) + 3


def _lstm_output_sum(x: float, lstm: torch.nn.LSTM) -> float:
    return float(lstm(torch.full((1, 3, 2), x))[0].sum())


def test_shared_model_reaches_workers_as_it_is(dask_client):
    """A model shared by a batch's tasks (an LSTM that has run a forward pass, which Dask's own torch serialiser
    cannot send) reaches every worker with its weights and gives the same outputs as in this process."""
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(2, 4, batch_first=True)
    want = {x: _lstm_output_sum(x, lstm) for x in (0.5, 1.0, 2.0)}
    got = {x: res for x, res, err in map_tasks(_lstm_output_sum, want, dask_client, args=(lstm,), progress=False)}
    assert got == want


@pytest.mark.parametrize("on_dask", [False, True])
def test_map_tasks_reports_each_items_error(on_dask, request):
    c = request.getfixturevalue("dask_client") if on_dask else None
    got = {it: (res, err) for it, res, err in map_tasks(_square_or_fail, range(6), c, progress=False, window=2)}
    assert sorted(got) == list(range(6))
    assert {i: r for i, (r, e) in got.items() if e is None} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
    assert isinstance(got[3][1], ValueError) and "three is refused" in str(got[3][1])


def test_unreachable_scheduler_is_one_clear_line(tmp_path, capsys):
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(SchedulerUnreachable, match=f"no Dask scheduler answers at {address} within 1 s"):
        with client(address, timeout_s=1):
            pass
    stale = tmp_path / "scheduler.json"  # a scheduler file left by a scheduler that has gone
    stale.write_text(json.dumps({"address": address}))
    with pytest.raises(SchedulerUnreachable, match="within 1 s"):
        with client(str(stale), timeout_s=1):
            pass
    assert time.monotonic() - t0 < 30  # it gives up, it does not hang
    (tmp_path / "in" / "s1").mkdir(parents=True)
    (tmp_path / "in" / "s1" / "la_4ch.nii.gz").write_bytes(b"not read: the scheduler is asked first")
    code = cli.main(["ingest", "nifti", str(tmp_path / "in"), "--out", str(tmp_path / "c"), "--scheduler",
                     str(tmp_path / "no-scheduler.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("cmrlib: error: no Dask scheduler file at")
    assert not (tmp_path / "c").exists()  # nothing written, no report left saying "running"
    for garbage in ("", "[1, 2]", "\x00\xff", '{"address": 5}'):
        (tmp_path / "garbage.json").write_text(garbage)
        with pytest.raises(SchedulerUnreachable, match="garbage.json: not a Dask scheduler file"):
            with client(str(tmp_path / "garbage.json"), timeout_s=1):
                pass


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return make_cohort(tmp_path_factory.mktemp("ph") / "cohort", n=3, seed=2, progress=False, n_frames=10, matrix=48,
                       pixel_mm=4.0)


def test_phantom_cohort_on_dask_matches_one_process(tmp_path, dask_client, cohort):
    b = make_cohort(tmp_path / "b", n=3, seed=2, progress=False, scheduler=dask_client, n_frames=10, matrix=48,
                    pixel_mm=4.0)
    assert cohort.ids() == b.ids() and cohort.splits() == b.splits()
    for cid in cohort.ids():
        np.testing.assert_array_equal(cohort.read(cid).pixels, b.read(cid).pixels)


def test_optical_flow_and_segmentation_on_dask_match_one_process(dask_client, cohort):
    from cmrlib.data import FrameGeometry
    from cmrlib.methods import heartmae as hm
    from cmrlib.methods.segmentation.predict import predict_store
    from cmrlib.models import unet11

    ids = cohort.select(view=["4CH", "2CH"])
    here = hm.data.preprocess_store(cohort, ids, progress=False, load=32, cycle=8)
    there = hm.data.preprocess_store(cohort, ids, progress=False, load=32, cycle=8, scheduler=dask_client)
    assert here.table.equals(there.table) and len(here.table) == len(ids)
    np.testing.assert_array_equal(here.frames, there.frames)
    np.testing.assert_array_equal(here.weight, there.weight)
    torch.manual_seed(0)
    model = unet11(n_classes=6, width=0.0625).eval()
    model.geometry = FrameGeometry(size=32, spacing=6.0)
    a = predict_store(model, cohort, ids, progress=False)
    b = predict_store(model, cohort, ids, progress=False, scheduler=dask_client)
    assert list(a) == list(b) == ids and all(np.array_equal(a[i], b[i]) for i in ids)


def _frames_times(scale: float, cine) -> float:
    if cine.view == "2CH":
        raise ValueError("no 2CH here")
    return scale * cine.n_frames


@pytest.mark.parametrize("on_dask", [False, True])
def test_store_map_reads_each_cine_where_it_runs_and_names_a_failing_one(on_dask, cohort, request):
    c = request.getfixturevalue("dask_client") if on_dask else None
    ids = cohort.select(view=["SAX", "4CH"])
    assert cohort.map(_frames_times, ids, args=(2.0,), scheduler=c, progress=False) == {i: 20.0 for i in ids}
    with pytest.raises(ValueError, match="no 2CH here") as e:
        cohort.map(_frames_times, cohort.ids(), args=(1.0,), scheduler=c, progress=False)
    assert any("2CH" in n for n in e.value.__notes__)


def test_ed_es_over_a_store_on_dask_matches_one_process(dask_client, cohort):
    from cmrlib.methods import edes
    from cmrlib.models.tempreg import tempreg_net

    torch.manual_seed(0)
    model = tempreg_net(widths=(4, 8), blocks=(1, 1), hidden=8).eval()
    ids = cohort.ids()
    a = edes.predict.predict_store(model, cohort, ids, size=32, progress=False)
    b = edes.predict.predict_store(model, cohort, ids, size=32, progress=False, scheduler=dask_client)
    assert [(a[i]["ed"], a[i]["es"]) for i in ids] == [(b[i]["ed"], b[i]["es"]) for i in ids]
    np.testing.assert_allclose(a[ids[0]]["curve"], b[ids[0]]["curve"], rtol=1e-5)


def test_lazy_arrays_read_frames_only_when_computed(cohort):
    cid = cohort.select(view="SAX")[0]
    px = cohort.lazy(cid)
    assert px.chunks[0] == (1,) * px.shape[0] and px.dtype == np.float32  # a frame per chunk
    np.testing.assert_array_equal(px[3].compute(), cohort.read(cid).pixels[3])
    np.testing.assert_array_equal(cohort.lazy(cid, "labels").max(axis=0).compute(), cohort.read(cid).labels.max(0))


def test_cli_ingest_on_a_two_worker_local_cluster(acdc_dir, tmp_path, capsys):
    root = link_acdc(acdc_dir, tmp_path / "acdc", ["001", "021", "041"])
    assert cli.main(["ingest", "acdc", str(root), "--out", str(tmp_path / "c"), "--workers", "2"]) == 0
    assert "3 subject(s) ingested" in capsys.readouterr().out
    store = CohortStore(tmp_path / "c")
    assert store.report()["status"] == "complete" and len(store.manifest()) == 3 and len(store.splits()) == 3


def _kill_one_worker_when_a_subject_is_done(c, markers, killed: list):
    deadline = time.monotonic() + 60
    while not list(markers.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = next(iter(c.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    killed.append(len(list(markers.glob("*.json"))))


def test_killed_worker_loses_no_finished_subject(acdc_dir, tmp_path, dask_client):
    pids = [f"{i:03d}" for i in range(1, 13)]
    root = link_acdc(acdc_dir, tmp_path / "acdc", pids)
    out, killed = tmp_path / "cohort", []
    watcher = threading.Thread(target=_kill_one_worker_when_a_subject_is_done,
                               args=(dask_client, out / ".ingest" / "acdc", killed))
    watcher.start()
    store = ingest("acdc", root, out, scheduler=dask_client, progress=False)
    watcher.join()
    assert killed and killed[0] < len(pids)  # a worker died while subjects were still to do
    rep = store.report()
    assert rep["status"] == "complete" and rep["n_bad"] == 0 and rep["n_ingested"] == len(pids)
    assert len(store) == len(pids) and sorted(store.splits()) == [f"acdc{i:03d}" for i in range(1, 13)]
    for m in (out / ".ingest" / "acdc").glob("*.json"):
        assert all(cid in store for cid in json.loads(m.read_text())["cines"])
    again = ingest("acdc", root, out, scheduler=dask_client, progress=False).report()
    assert again["n_already_done"] == len(pids) and again["n_ingested"] == 0
