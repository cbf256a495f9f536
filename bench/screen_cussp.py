"""CUSSP's Barlow Twins settings screened on validation only (not a speed bench): an encoder pretrained with each
variant of the default profile's settings, then the gate, a linear probe of MR on its frozen features (fit on the
training cines, scored on the validation cines) beside the same probe on its random initialisation. Test subjects
are never read (nor pretrained on). One CSV row per variant, appended to OUT/screen.csv.

Usage: python bench/screen_cussp.py RUN_DIR OUT '[{"tag": "a", "pretrain_steps": 1000, "pretrain_aug": {...}}, ...]'
RUN_DIR holds notebooks 00 and 01 of the default profile; a variant sets CUSSPConfig fields, `pretrain_aug`
(PatchAug settings) and `input` ("window", the default, or "cycle").
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import yaml

from cmrlib.methods.cussp import Study
from cmrlib.methods.cussp.data import PatchAug, labelled, unlabelled
from cmrlib.methods.cussp.learner import pretrain, probe
from cmrlib.utils import seed_for
from screening import screen_variants  # bench/screening.py


def screen(study: Study, tag: str, input: str = "window", pretrain_aug: dict | None = None, **settings) -> dict:
    """One variant's validation row."""
    cfg = dataclasses.replace(study.cfg, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    aug = PatchAug.make(pretrain_aug if pretrain_aug is not None else study.p["pretrain_aug"])
    labels, patches = study.labelled_cohort.labels, study.patches
    test = labels.subject[labels.split == "test"].tolist()
    pool = unlabelled(list(patches.sets.values()), input, exclude=test)
    train, valid = (labelled(patches.labelled, labels, s, input)[:2] for s in ("train", "valid"))
    t0 = time.time()
    net, row = pretrain(pool, valid[0], cfg, aug, tag)
    seconds = time.time() - t0
    rnd, _ = pretrain(pool[:0], valid[0], cfg, aug, "random")
    seed = seed_for(cfg.seed, "cussp", "probe")
    return dict(tag=tag, input=input, **settings, pretrain_aug=json.dumps(dataclasses.asdict(aug)),
                pool=len(pool), steps=row.get("steps"), train_s=round(seconds), train_loss=row.get("train_loss"),
                valid_loss=row.get("valid_loss"), probe_auc=probe(net, train, valid, seed),
                probe_auc_random=probe(rnd, train, valid, seed), n_valid=len(valid[1]), n_valid_mr=int(valid[1].sum()))


def main(run_dir: str, out: str, variants: str):
    profile = yaml.safe_load((Path(__file__).parents[1] / "cmrlib/profiles/default.yaml").read_text())
    params = Study.parameters(profile, "default", {"run_dir": run_dir, "figures_dir": str(Path(out) / "figures"),
                                                   "workers": 1})
    study = Study(params, out=out)
    screen_variants(study, screen, variants, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
