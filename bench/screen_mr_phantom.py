"""How hard the phantom's MR is (not a speed bench): N 4CH-only phantom subjects (default 500, seed 7, the default
profile's 30 frames at 128 px and 1.8 mm), CUSSP's systolic-window patches from the phantom's own masks, a ResNet-18
trained from scratch on the training split (notebook 04's default width, stem, epochs and rate) and scored once on the
validation and test splits together: ROC-AUC overall and per MR grade against the non-MR cines, one row per
training seed. The yardstick for setting jet sizes (`cmrlib.phantom.subjects.JET_RANGES`): about 0.80-0.92 leaves
the self-supervised rows room.

Usage: python bench/screen_mr_phantom.py OUT [N] ['{"p_flow_void": 0.3}'] [SEEDS]
(PhantomConfig overrides as JSON; SEEDS: training seeds, comma-separated, default 0)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score

from cmrlib.learn import config_from
from cmrlib.methods import cussp
from cmrlib.phantom import make_cohort
from cmrlib.study import own_labels


def main(out: str, n: str = "500", config: str = "{}", seeds: str = "0") -> list[dict]:
    prof = yaml.safe_load((Path(__file__).parents[1] / "cmrlib/profiles/default.yaml").read_text())
    p, cohort = cussp.Study.parameters(prof, "default"), prof["00"]
    store = make_cohort(Path(out) / "cohort", n=int(n), seed=7, views=("4CH",), start=1000, progress=False,
                        n_frames=cohort["n_frames"], **{**cohort["phantom_config"], **json.loads(config)})
    patches = cussp.data.preprocess_store(store, own_labels, store.select(view="4CH"), frames=cohort["n_frames"],
                                     window=int(p["window"]), progress=False)
    labels = cussp.data.mr_labels(store)
    train, held = (cussp.data.labelled(patches, labels, s, "window") for s in ("train", ["valid", "test"]))
    return [supervised_auc(train, held, dict(p, seed=int(seed)), p["aug"]) for seed in seeds.split(",")]


def supervised_auc(train, held, p: dict, aug: dict) -> dict:
    """The supervised ResNet-18 of training seed p["seed"]: its ROC-AUC on the held-out cines, overall and by grade."""
    cfg = config_from(cussp.learner.CUSSPConfig, p)
    learn, log = cussp.learner.fit_supervised(train[:2], held[:2], cfg, cussp.data.PatchAug.make(aug))
    s, y, g = cussp.learner.scores(learn.model, held[0]), held[1], held[2].grade.to_numpy()
    row = dict(seed=cfg.seed, n_train=len(train[1]), n_train_mr=int(train[1].sum()), n_scored=len(y),
               n_scored_mr=int(y.sum()),
               roc_auc=round(roc_auc_score(y, s), 3), train_loss=round(log["train_loss"], 3))
    for k in (1, 2, 3):
        sel = (g == k) | (y == 0)
        row[f"grade_{k}"] = round(roc_auc_score(y[sel], s[sel]), 3) if (g == k).any() else None
        row[f"n_grade_{k}"] = int((g == k).sum())
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main(*sys.argv[1:5])
