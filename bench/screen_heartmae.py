"""HeartMAE pretraining settings screened on validation only (not a speed bench): MAE-ViT-B trained with each
variant of the default profile's settings, then its masked loss on the validation views beside the copy rule, the
mean rule and a random network (the pretext gate), and a ridge of LVEF on frozen features (the centre crop of the
middle clip of each view) of the validation subjects beside a random encoder and the training mean (the features
gate). Test subjects are never read. One CSV row per variant, appended to OUT/screen.csv.

Usage: python bench/screen_heartmae.py RUN_DIR OUT '[{"tag": "token", "target": "token", "epochs_base": 8}, ...]'
    [STUDY_PARAMS]
RUN_DIR holds notebook 00's default cohort; a variant sets HeartMAEConfig fields (MAE-ViT-B's 90 % random masking);
STUDY_PARAMS (JSON) sets notebook-06 parameters for every variant, e.g. '{"heart_mm": 150}' for the preprocessing.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from cmrlib.methods.heartmae import Study
from cmrlib.methods.heartmae.data import Clips
from cmrlib.methods.heartmae.features import extract, mae_encoder
from cmrlib.methods.heartmae.gates import pretext, ridge
from cmrlib.methods.heartmae.learner import BASE, FAMILY, network, pretrain
from screening import screen_variants  # bench/screening.py

POOLS = ("mean", "mean+motion")  # the clip features each model is probed with (`VideoMAE.features`)


def screen(study: Study, tag: str, **settings) -> dict:
    """One variant's validation row."""
    cfg = dataclasses.replace(study.cfg, **settings)
    ratio, masking = FAMILY[BASE]["ratio"], FAMILY[BASE]["masking"]
    v, t = study.views, study.task_targets
    t0 = time.time()
    model, summary = pretrain(BASE, v.cines, cfg, v.mean, v.std, study.out / f"m_{tag}")
    seconds = time.time() - t0
    rnd = network(cfg, 123)
    clips = Clips(v.cines.take(study._valid_rows()), cfg.size, cfg.frames, v.mean, v.std, train=False)
    gate = dict(pretext({"mae": model}, rnd, clips, ratio, masking, 7, target=cfg.target)[["model", "masked_loss"]]
                .to_numpy())
    torch.save(model.state_dict(), study.out / f"m_{tag}" / "mae.pt")  # for later feature variants
    feats = {f"{name} {pool}": extract(mae_encoder(net, v.mean, v.std, pool), v.cines, cfg.size,
                                       cfg.frames, 1, 1, progress=False)
             for name, net in (("mae", model), ("random", rnd)) for pool in POOLS}
    s, role = t.subjects, t.role
    r = ridge(feats, v.cines.table, t.y.loc[s], t.kinds, [s[i] for i in role["train"]],
              [s[i] for i in role["valid"]])
    ef = r[r.task == "LVEF"].set_index("encoder")
    lvef = {f"lvef_mae_{name}{'' if pool == 'mean' else '_' + pool}".replace(" ", "_").replace("+", "_"):
            ef.at[f"{name} {pool}", "valid_MAE"] for name in ("mae", "random") for pool in POOLS}
    return dict(tag=tag, **settings, heart_mm=study.p["heart_mm"], train_s=round(seconds),
                valid_loss=summary["valid_loss"], masked_loss=gate["mae"], copy_rule=gate["copy rule"],
                mean_rule=gate["mean rule"], random_network=gate["random network"], **lvef,
                lvef_mae_training_mean=ef["mean_rule_MAE"].iloc[0])


def main(run_dir: str, out: str, variants: str, study_params: str = "{}"):
    profile = yaml.safe_load((Path(__file__).parents[1] / "cmrlib/profiles/default.yaml").read_text())
    params = Study.parameters(profile, "default", {"run_dir": run_dir, "figures_dir": str(Path(out) / "figures"),
                                                   "expert_baseline": False, "workers": 1, **json.loads(study_params)})
    study = Study(params, out=out)
    screen_variants(study, screen, variants, out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
