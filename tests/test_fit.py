"""`cmrlib fit`: a method's training with its notebook's parameters, in one process and data-parallel over two CPU
processes (gloo) launched by `accelerate launch`; two processes with batch B end where one with batch 2B does."""
from __future__ import annotations

import json
import subprocess

import pytest

from cmrlib import cli
from cmrlib.fit import FitError, fit
from cmrlib import modelfile, predictor
from cmrlib.distributed import SplitDL, launch_command
from cmrlib.methods import edes, mvnet
from cmrlib.phantom import make_cohort

ONE_METHOD = {"methods": ["TempReg-Net"], "epochs": 3}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    make_cohort(run / "cohort", n=12, seed=0, n_frames=20, matrix=96, pixel_mm=2.5, progress=False)
    return run


def test_unknown_method_or_missing_cohort_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(FitError, match="cmrlib fit` trains: segmentation, edes, mvnet, cussp, sslhf, heartmae"):
        fit("tempreg", "smoke", tmp_path)
    assert cli.main(["fit", "edes", "--run", str(tmp_path)]) == 2
    assert "no cohort with cines (run notebook 00 first" in capsys.readouterr().err


def test_mvnet_fit_exports_both_stages_of_each_view(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run folder given relative to a folder other than the project's
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine").symlink_to(run)
    rec = fit("mvnet", "smoke", "runs/mine", dict(epochs1=1, epochs2=1), out=".")
    assert [r["model"] for r in rec["rows"]] == ["2CH stage 1", "2CH stage 2", "4CH stage 1", "4CH stage 2"]
    record = json.loads((tmp_path / "fit.json").read_text())
    assert record["processes"] == 1
    hw = record["hardware"]  # where it ran and each epoch's seconds: one epoch per stage and view
    assert hw["device"] == "cpu" and hw["threads"] >= 1 and len(hw["epoch_seconds"]) == 4
    tracker = mvnet.predict.load(tmp_path / "models", "4CH")  # where every Study keeps its models
    assert tracker.view == "4CH"
    p = predictor.load(tmp_path / "mvnet.predictor")  # the run's Predictor, its inference chosen on validation
    assert p.provenance["note"].startswith("phantom trackers")
    from cmrlib.store import CohortStore

    store = CohortStore(run / "cohort")
    assert "MAPSE" in p.predict(store.read(store.select(view="4CH", split="test")[0])).measures


def test_two_cpu_processes_end_where_one_with_the_doubled_batch_does(run, tmp_path):
    private = str(tmp_path / "MUELLER_HANS" / "models")  # a path parameter naming a person never reaches fit.json
    one = fit("edes", "smoke", run, dict(ONE_METHOD, bs=8, data_dir=private), out=tmp_path / "one")
    assert "MUELLER" not in (tmp_path / "one" / "fit.json").read_text()
    cmd = [*launch_command(2), "cmrlib", "fit", "edes", "--profile", "smoke", "--run", str(run),
           "--out", str(tmp_path / "two"), "-p", "methods=[TempReg-Net]", "-p", "epochs=3", "-p", "bs=4"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "fit.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2) and two["batch_per_process"] == {"bs": 4}
    (a,), (b,) = one["rows"], two["rows"]
    assert abs(a["valid_loss"] - b["valid_loss"]) < 0.1 * a["valid_loss"], (a["valid_loss"], b["valid_loss"])
    model = edes.learner.load(tmp_path / "two" / b["model"])  # process 0 exported a working model
    assert sum(p.numel() for p in model.parameters()) > 0
    for folder in ("one", "two"):  # and the run's ED/ES Predictor, without a real-data check behind it
        p = predictor.load(tmp_path / folder / "edes.predictor")
        assert p.model == "TempReg-Net" and p.provenance["real_check"] is None


TWO_PROCESSES = {  # each makes a phantom cohort of its own first; CUSSP's pretraining leaves its head out of the loss
    "cussp": ["anatomy=labels", "pool_subjects=0", "pool_fractions=[]", "pretrain_steps=2", "epochs=1",
              "siam_epochs=1", "cnn_epochs=1", "rf_iter=2", "n_boot=20", "bs=8", "pretrain_bs=8"],
    "sslhf": ["anatomy=labels", "rows=[SSLHF]", "proxy_steps=2", "epochs=1", "bs=2", "proxy_bs=2"],
}


@pytest.mark.parametrize("method", sorted(TWO_PROCESSES))
def test_cussp_and_sslhf_train_in_two_cpu_processes(run, tmp_path, method):
    """Process 0 makes the Study's own phantom cohort before the other reads it, a step that leaves parameters out
    of its loss trains, and the best epoch's weights go back into the unwrapped network."""
    sets = [a for kv in TWO_PROCESSES[method] for a in ("-p", kv)]
    cmd = [*launch_command(2), "cmrlib", "fit", method, "--profile", "smoke", "--run", str(run), "--out",
           str(tmp_path), *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rec = json.loads((tmp_path / "fit.json").read_text())
    assert rec["processes"] == 2 and set(rec["batch_per_process"]) == set(predictor.study_class(method).BATCHES)
    assert any(r.get("valid_loss") is not None for r in rec["rows"])
    if method == "cussp":
        cussp_fit_is_its_study_with_a_predictor(rec, tmp_path)


def cussp_fit_is_its_study_with_a_predictor(rec: dict, out):
    """CUSSP's fit runs its Study's pretraining stages and leaves a Predictor that finds the valve with the run's
    segmenter, named, not copied (so it loads only beside one)."""
    assert {"pretrain cycle", "pretrain window"} <= {r.get("stage") for r in rec["rows"]}
    with pytest.raises(predictor.PredictorError, match="segmentation.predictor: no predictor here"):
        predictor.load(out / "cussp.predictor")
    saved = modelfile.read(out / "cussp.predictor", kind="predictor")
    assert saved["needs"] == {"segmenter": "segmentation"}
    assert {"size", "patch_mm", "frames", "window", "threshold"} <= set(saved["prep"])


def test_segmentation_fit_leaves_the_runs_predictor_that_predicts(run, tmp_path):
    from cmrlib.store import CohortStore

    fit("segmentation", "smoke", run, dict(epochs_sax=1, epochs_lax=1, acdc_limit=0), out=tmp_path)
    p = predictor.load(tmp_path / "segmentation.predictor")
    store = CohortStore(run / "cohort")
    sax = store.read(store.select(view="SAX", split="test")[0])
    assert {"SAX", "LAX"} == set(p.nets) and set(p.prep["uncertainty_p95"]) <= {"SAX", "LAX"}
    assert "LVEDV" in p.predict(sax).measures


def test_heartmae_fit_goes_on_to_the_probes_and_leaves_the_runs_predictor(tmp_path):
    """With all four autoencoders and enough subjects for the probes (two in test), `fit` ends as notebook 06."""
    from cmrlib.store import CohortStore

    run = tmp_path / "run"
    make_cohort(run / "cohort", n=20, seed=1, n_frames=16, matrix=64, pixel_mm=3.5, progress=False)
    rec = fit("heartmae", "smoke", run, dict(probe_epochs=2, n_boot=10, crops=1, clips=1, expert_baseline=False),
              out=tmp_path / "fit")
    assert [r["model"] for r in rec["rows"]] == ["MAE-ViT-B", "MAE-tube", "MAE-95", "HeartMAE"]
    p = predictor.load(tmp_path / "fit" / "heartmae.predictor")
    store = CohortStore(run / "cohort")
    cines = [store.read(cid) for cid in store.select(view="4CH", split="test")[:1]]
    assert "LVEF" in p.predict(cines).measures


class Unsent(SplitDL):
    """SplitDL as process `rank` of two sees it, every process given one epoch order with no process group."""

    def _broadcast(self, t, rank):
        return sorted(t)


@pytest.mark.parametrize("n,bs", [(n, bs) for n in range(2, 10) for bs in (1, 2, 3, 4)])
def test_each_process_trains_on_equal_batches_never_one_sample_of_a_set_of_two(n, bs):
    from cmrlib.learn import dataloaders

    train = list(range(n))
    ranks = [Unsent(dataloaders(train, train, bs).train, rank=r, world_size=2, device="cpu") for r in (0, 1)]
    epochs = [[b.tolist() for b in dl] for dl in ranks]
    assert len(epochs[0]) == len(epochs[1]) == len(ranks[0]) > 0  # the same steps in both: no process waits
    assert all(len(b) >= min(bs, 2) for e in epochs for b in e)  # batch norm sees two samples whenever bs allows
    seen = {i for e in epochs for b in e for i in b}
    assert seen == set(train) or ranks[0].drop_last  # only a dropped last batch leaves samples out of an epoch
