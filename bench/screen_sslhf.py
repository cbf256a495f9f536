"""SSLHF's restoration proxy screened on validation only (not a speed bench): the SSLHF proxy trained with each
variant of the default profile's settings on the unlabelled pool, then the gate's probe at every encoder level
(a logistic regression on each level's pooled features, fit on each fold's training patches, scored on its
validation patients) beside a random encoder. Test patients choose nothing (the probe never scores them). One CSV
row per variant, appended to OUT/screen.csv.

Usage: python bench/screen_sslhf.py RUN_DIR OUT '[{"tag": "unet", "proxy_skips": 4}, ...]' [STUDY_PARAMS]
RUN_DIR holds notebook 00's default cohort (and 01's segmenter unless STUDY_PARAMS sets '{"anatomy": "labels"}');
a variant sets SSLHFConfig fields.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import yaml

from cmrlib.methods.sslhf import Study, crossval
from cmrlib.methods.sslhf.learner import NO_PROXY, PROXIES, network, pretrain
from cmrlib.utils import rng, seed_for
from screening import screen_variants  # bench/screening.py


def screen(study: Study, tag: str, **settings) -> dict:
    """One variant's validation row: the proxy's and the random encoder's probe AUC at each level."""
    cfg = dataclasses.replace(study.cfg, **settings)
    pool = study.patches.pool
    held = pool.x[rng(seed_for(study.p["seed"], "sslhf", "proxy-held")).choice(
        len(pool), min(len(pool), 32), replace=False)]  # the Study's own held-out pool patches
    t0 = time.time()
    proxy, log = pretrain(pool.x, held, cfg, PROXIES["SSLHF"], f"SSLHF {tag}")
    seconds = time.time() - t0
    gate = crossval.probe({"proxy": proxy.encoder, "random": network(NO_PROXY, cfg).encoder}, study.patches.patches,
                          study.patches.labels, study.fold_of)
    by = gate.pivot_table(index="level", columns="encoder", values="auc", aggfunc="mean")
    levels = {f"{enc}_L{lv}": round(float(by.at[lv, enc]), 3) for enc in ("proxy", "random") for lv in by.index}
    return dict(tag=tag, **settings, train_s=round(seconds), valid_mse=round(float(log["valid_loss"]), 4), **levels,
                valid_patients=int(gate.valid_patients.iloc[0]), folds=int(gate.fold.nunique()))


def main(run_dir: str, out: str, variants: str, study_params: str = "{}"):
    profile = yaml.safe_load((Path(__file__).parents[1] / "cmrlib/profiles/default.yaml").read_text())
    params = Study.parameters(profile, "default", {"run_dir": run_dir, "figures_dir": str(Path(out) / "figures"),
                                                   "workers": 1, **json.loads(study_params)})
    study = Study(params, out=out)
    screen_variants(study, screen, variants, out)


if __name__ == "__main__":
    main(*sys.argv[1:5])
