"""A model file is data: a folder of readable JSON beside safetensors weights. Opening one builds networks only
from the project's registry and never unpickles or runs anything, whatever was planted in a run folder."""
from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cmrlib import learn, modelfile, predictor
from cmrlib.methods import cussp, segmentation, sslhf
from cmrlib.methods import heartmae as hm
from cmrlib.methods.cussp.learner import Classifier
from cmrlib.methods.heartmae.heads import FittedProbe, Probe
from cmrlib.methods.mvnet.predict import MVnet
from cmrlib.modelfile import ModelFileError
from cmrlib.models import unet11
from cmrlib.models.cussp import CUSSPNet, mlp_head
from cmrlib.models.mae_st import MAESize, VideoMAE
from cmrlib.models.regress import point_regressor
from cmrlib.models.sslhf import Classifier3D, Restorer3D
from cmrlib.models.tempreg import tempreg_net


class Payload:
    """What a hostile pickle does when opened: create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


NETS = {  # every architecture a predictor carries, at toy sizes, with an input it takes
    "unet": (lambda: unet11(6, width=0.0625), (1, 1, 32, 32)),
    "tempreg": (lambda: tempreg_net("tempreg", widths=(4, 8), blocks=(1, 1), hidden=4), (1, 6, 1, 32, 32)),
    "regressor": (lambda: point_regressor("tiny", 4, 1, widths=(4, 8), blocks=(1, 1)), (2, 1, 64, 64)),
    "cussp": (lambda: Classifier(CUSSPNet(4, 8, (16, 16), 8)), (2, 4, 32, 32)),
    "classifier3d": (lambda: Classifier3D((4, 4, 8, 8, 8), (8,), 0.0), (2, 1, 8, 16, 16)),
    "restorer3d": (lambda: Restorer3D((4, 4, 8, 8, 8)), (1, 1, 8, 16, 16)),
}


@pytest.mark.parametrize("name", NETS)
def test_every_architecture_round_trips_to_identical_outputs(tmp_path, name):
    build, shape = NETS[name]
    torch.manual_seed(0)
    net = build().eval()
    x = torch.randn(shape)
    path = modelfile.save(tmp_path / f"{name}.model", net, note="toy")
    doc = json.loads((path / "model.json").read_text())
    assert doc["format"] == modelfile.FORMAT and doc["body"]["model"]["$module"].startswith("cmrlib.")
    again, meta = modelfile.load(path)
    assert type(again) is type(net) and meta == dict(note="toy") and not again.training
    with torch.no_grad():
        torch.testing.assert_close(again(x), net(x), rtol=0, atol=0)


def test_records_keep_their_arrays_tables_and_networks(tmp_path):
    torch.manual_seed(0)
    tracker = MVnet(point_regressor("tiny", 4, 1, widths=(4, 8), blocks=(1, 1)),
                    point_regressor("tiny", 4, 1, widths=(4, 8), blocks=(1, 1)), "4CH", 2, 5, 3.0)
    probe = FittedProbe(Probe(8, 2, 4, 0.0).eval(), ["LVEF", "AF"], dict(LVEF="reg", AF="cls"),
                        np.arange(8.0), np.ones(8), pd.Series([55.0, 0.0], index=["LVEF", "AF"]),
                        pd.Series([8.0, 1.0], index=["LVEF", "AF"]),
                        pd.DataFrame(dict(epoch=[0, 1], valid_loss=[1.0, float("nan")])))
    mae = VideoMAE(MAESize(16, 8, 4, 2, 16, 1, 2, 16, 1, 2, 4))
    body = dict(tracker=tracker, probe=probe, mae=mae, steps=(1, 2), keyed={1: "a"}, nan=float("nan"))
    modelfile.write(tmp_path / "x.model", body)
    got = modelfile.read(tmp_path / "x.model")
    assert got["steps"] == (1, 2) and got["keyed"] == {1: "a"} and np.isnan(got["nan"])
    assert isinstance(got["tracker"], MVnet) and (got["tracker"].smooth, got["tracker"].tta) == (5, 3.0)
    p = got["probe"]
    np.testing.assert_array_equal(p.f_mean, probe.f_mean)
    pd.testing.assert_series_equal(p.y_std, probe.y_std)
    pd.testing.assert_frame_equal(p.history, probe.history)
    h, mask = np.random.default_rng(0).normal(size=(3, 2, 8)), np.ones((3, 2), bool)
    pd.testing.assert_frame_equal(p.predict(h, mask, list("abc")), probe.predict(h, mask, list("abc")))
    assert modelfile.fingerprint(body) == modelfile.fingerprint(got)


def test_a_network_built_outside_the_registry_is_refused_at_save_time(tmp_path):
    with pytest.raises(ModelFileError, match="built outside the architecture registry"):
        modelfile.save(tmp_path / "m.model", torch.nn.Linear(2, 1))
    with pytest.raises(ModelFileError, match="a Payload cannot be stored"):
        modelfile.save(tmp_path / "m.model", mlp_head(2, 4), extra=Payload(tmp_path / "x"))
    assert not (tmp_path / "m.model").exists()


def _planted(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """Model folders and files of every kind, each holding a pickle payload somewhere."""
    blob = pickle.dumps(Payload(marker))
    good = modelfile.save(tmp_path / "good.model", mlp_head(2, 4))
    cases = {}
    cases["pickle as the folder"] = tmp_path / "a.model"
    cases["pickle as the folder"].write_bytes(blob)
    cases["torch.save as the folder"] = tmp_path / "b.model"
    torch.save(dict(model=Payload(marker)), cases["torch.save as the folder"])
    for name, file in (("pickle as the JSON", "model.json"), ("pickle as the weights", "weights.safetensors")):
        cases[name] = shutil.copytree(good, tmp_path / f"{file}.model")
        (cases[name] / file).write_bytes(blob)
    for tag, name in (("$module", "posix:system"), ("$module", "builtins:eval"), ("$record", "subprocess:Popen"),
                      ("$module", "cmrlib.utils:atomic_write_text"), ("$record", "cmrlib.io.ukbb:Nope")):
        d = cases[f"{tag} {name}"] = shutil.copytree(good, tmp_path / f"{name.replace(':', '_')}{tag[1:]}.model")
        doc = json.loads((d / "model.json").read_text())
        doc["body"]["model"] = {tag: name, "args": {"command": f"touch {marker}"},
                                "fields": {"args": [f"touch {marker}"]}, "state": {}}
        (d / "model.json").write_text(json.dumps(doc))
    return cases


def test_a_planted_payload_creates_nothing_in_any_loader(tmp_path):
    marker = tmp_path / "pwned"
    cases = _planted(tmp_path, marker)
    loaders = {"modelfile.load": modelfile.load, "learn.load": learn.load, "segmentation.load": segmentation.learner.load,
               "cussp.load": cussp.learner.load, "sslhf.load": sslhf.learner.load, "heartmae.load": hm.learner.load}
    for case, path in cases.items():
        for name, load in loaders.items():
            with pytest.raises(ModelFileError) as e:
                load(path)
            assert path.name in str(e.value), (case, name, str(e.value))
        predictors = tmp_path / case.replace(" ", "_").replace("$", "") / "predictors"
        predictors.mkdir(parents=True)
        dst = predictors / "segmentation.predictor"
        shutil.copytree(path, dst) if path.is_dir() else shutil.copy(path, dst)
        if dst.is_dir() and (dst / "model.json").exists():
            (dst / "model.json").rename(dst / "predictor.json")
        with pytest.raises(predictor.PredictorError, match="segmentation.predictor"):
            predictor.load(dst)
        have, absent, broken = predictor.run_predictors(predictors.parent)
        assert not have and set(broken) == {"segmentation"}
    assert not marker.exists()
    assert not list(Path.cwd().glob("pwned"))


def _damaged(tmp_path: Path, how: str) -> Path:
    """A good model folder, damaged one way."""
    path = modelfile.save(tmp_path / f"{how.replace(' ', '_')}.model", mlp_head(2, 4))
    doc_file, weights = path / "model.json", path / "weights.safetensors"
    doc = json.loads(doc_file.read_text())
    state = doc["body"]["model"]["state"]
    tensors = {k: t.clone() for k, t in __import__("safetensors.torch").torch.load_file(weights).items()}
    save = __import__("safetensors.torch").torch.save_file
    if how == "missing tensor":
        del tensors[state.pop("1.weight")]
    elif how == "extra tensor":
        tensors["spare"] = torch.zeros(3)
    elif how == "shape mismatch":
        tensors[state["1.weight"]] = torch.zeros(5, 5)
    elif how == "nan weights":
        tensors[state["1.weight"]][0, 0] = float("nan")
    elif how == "unknown key":
        state["extra.weight"] = state.pop("1.weight")
    elif how == "future format":
        doc["format"] = 99
    elif how == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
        return path
    elif how == "huge json":
        with open(doc_file, "wb") as f:
            f.truncate(modelfile.MAX_JSON_BYTES + 1)
        return path
    elif how == "deep json":
        doc_file.write_text("[" * 100_000 + "]" * 100_000)
        return path
    doc_file.write_text(json.dumps(doc))
    save(tensors, str(weights))
    return path


@pytest.mark.parametrize("how, says", [
    ("missing tensor", "weights do not fit the network"), ("extra tensor", "tensor\\(s\\) the JSON does not use"),
    ("shape mismatch", "shape mismatch"), ("nan weights", "non-finite weights"),
    ("unknown key", "weights do not fit the network"), ("future format", "has format 99"),
    ("truncated weights", "weights.safetensors is damaged"), ("huge json", "too large"),
    ("deep json", "nested too deeply|not valid JSON")])
def test_a_damaged_model_is_one_line_naming_the_file_and_the_problem(tmp_path, how, says):
    path = _damaged(tmp_path, how)
    with pytest.raises(ModelFileError, match=f"^{path.name}: .*({says})") as e:
        modelfile.load(path)
    assert "\n" not in str(e.value)


def test_a_needed_predictor_is_a_name_inside_predictors_never_a_path(tmp_path):
    outside = tmp_path / "secret.predictor"
    segmentation.Predictor({"SAX": unet11(6, width=0.0625)}).save(outside)
    folder = tmp_path / "run" / "predictors"
    p = cussp.Predictor.from_model(mlp_head(2, 4), "CUSSP-SIAM", dict(size=32, patch_mm=2.0, frames=10, window=5,
                                                                       crop_size=32, crop_mm=3.0), 0.5)
    p.needs = {"segmenter": "../../secret"}
    p.save(folder / "cussp.predictor")
    with pytest.raises(predictor.PredictorError, match="needs 'segmenter' from '../../secret', which is not a "
                                                       "predictor name"):
        predictor.load(folder / "cussp.predictor")


def test_saving_again_replaces_the_folder_whole(tmp_path):
    path = modelfile.save(tmp_path / "m.model", mlp_head(2, 4), epoch=1)
    modelfile.save(path, mlp_head(2, 8), epoch=2)
    model, meta = modelfile.load(path)
    assert meta == dict(epoch=2) and model[1].out_features == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.model"]  # no temporary or old folder left


def test_two_processes_writing_one_folder_leave_one_whole_folder(tmp_path, monkeypatch):
    """Each process of a data-parallel fit may write the same model folder: another writer's folder that lands
    between this writer's two moves goes too, and the folder left is one writer's whole folder."""
    path = modelfile.save(tmp_path / "m.model", mlp_head(2, 4), epoch=1)
    replace, raced = os.replace, []

    def another_writer_first(src, dst):
        if Path(src).name.endswith(".tmp") and not raced:  # the other process's whole folder arrives first
            raced.append(tmp_path / "other.model")
            modelfile.write(raced[0], dict(model=mlp_head(2, 6), meta=dict(epoch=3)))
            replace(raced[0], dst)
        replace(src, dst)

    monkeypatch.setattr(modelfile.os, "replace", another_writer_first)
    modelfile.save(path, mlp_head(2, 8), epoch=2)
    model, meta = modelfile.load(path)
    assert raced and meta == dict(epoch=2) and model[1].out_features == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.model"]


def test_every_module_that_registers_a_factory_or_record_may_be_imported_by_a_model_file():
    """A model file imports only where factories and records live (`modelfile.IMPORTABLE`); a module that registers
    one elsewhere would make its models unreadable."""
    pkg = Path(modelfile.__file__).parent
    registering = {".".join(("cmrlib", *p.relative_to(pkg).with_suffix("").parts)) for p in pkg.rglob("*.py")
                   if p.name != "modelfile.py" and ("@architecture" in (t := p.read_text()) or "@record" in t
                                                    or "modelfile.record" in t or "@modelfile" in t)}
    assert registering and all(modelfile.importable(m) for m in registering), registering
    assert not modelfile.importable("cmrlib.cli") and not modelfile.importable("cmrlib.__main__")


@pytest.mark.parametrize("name, field, value", [("tempreg", "blocks", [10_000_000, 1]), ("unet", "width", 1e6),
                                                ("unet", "width", 500.0), ("unet", "n_classes", float("inf"))])
def test_a_hostile_constructor_argument_is_refused_before_anything_is_built(tmp_path, name, field, value):
    """One number in a model file's constructor (a count of ten million blocks, a width a million times the usual)
    is one line within seconds and no memory: bounded before the meta build, and the meta build never falls back to
    a real one."""
    import resource
    import time

    make, _ = NETS[name]
    path = modelfile.save(tmp_path / "m.model", make())
    doc_file = path / "model.json"
    doc = json.loads(doc_file.read_text())
    doc["body"]["model"]["args"][field] = value
    doc_file.write_text(json.dumps(doc))
    before, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(ModelFileError, match=f"{path.name}: .*(beyond any network|cannot be built|do not fit|shape)"):
        modelfile.load(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert time.perf_counter() - t0 < 10 and grown_mb < 1024
