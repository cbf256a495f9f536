"""HeartMAE's inference views screened on validation only (not a speed bench): each encoder's features that notebook
06 of RUN_DIR cached (K crops x T clips of every view), beside the centre crop of each clip taken from them (what
`crops: 1` extracts), scored by the attention-MIL probe's validation error (scaled MAE of each regressed measure,
LVEF's MAE) and the ridge gate's validation LVEF MAE. Test subjects are never read.

Usage: python bench/screen_heartmae_views.py RUN_DIR OUT   (about 3 min on 2 cores; prints one Markdown table)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cmrlib.methods.heartmae import Study
from cmrlib.methods.heartmae.features import bags, cached_features
from cmrlib.methods.heartmae.gates import ridge
from cmrlib.methods.heartmae.heads import fit_probe
from cmrlib.methods.heartmae.learner import FAMILY, RANDOM
from cmrlib.utils import seed_everything


def cached(study: Study, run_06: Path, name: str) -> np.ndarray:
    """The features notebook 06 saved in `run_06` for `name` under this study's settings (an error if they differ)."""
    path = run_06 / study.features_file(name).name

    def missing():
        raise FileNotFoundError(f"{path}: no features of {name} with the default profile's settings")
    return cached_features(path, study.features_key(name), missing)


def validation_scores(study: Study, feats: np.ndarray) -> dict:
    """The probes' validation error on these features (one probe per task group, best epoch on validation)."""
    t = study.task_targets
    y, role, s, table = t.y, t.role, t.subjects, study.views.cines.table
    h, mask, _ = bags(feats, table, s)
    valid = [s[i] for i in role["valid"]]
    preds = []
    for g in dict.fromkeys(t.groups.values()):
        tasks = [k for k in y.columns if t.groups[k] == g]
        seed_everything(0)
        probe = fit_probe(h, mask, y.loc[s, tasks], t.kinds, role["train"], role["valid"], study.probe_cfg)
        preds.append(probe.predict(h[role["valid"]], mask[role["valid"]], valid))
    pred = pd.concat(preds, axis=1)
    reg = [k for k in y.columns if t.kinds[k] == "reg"]
    err = (pred[reg] - y.loc[valid, reg]).abs().mean()
    scale = y.loc[[s[i] for i in role["train"]], reg].std()
    gate = ridge({"f": feats}, table, y.loc[s], t.kinds, [s[i] for i in role["train"]], valid)
    return dict(scaled_mae=float((err / scale).mean()), lvef_mae=float(err["LVEF"]),
                ridge_lvef_mae=float(gate.set_index("task").at["LVEF", "valid_MAE"]))


def main(run_dir: str, out: str) -> int:
    profile = yaml.safe_load((Path(__file__).parents[1] / "cmrlib/profiles/default.yaml").read_text())
    params = Study.parameters(profile, "default", {"run_dir": run_dir, "figures_dir": str(Path(out) / "figures"),
                                                   "expert_baseline": False, "workers": 1})
    study = Study(params, out=out)
    k, t = int(params["crops"]), int(params["clips"])
    centre = [c * k + k // 2 for c in range(t)]  # `inference_views`: clip-major, crops left / centre / right
    rows = []
    for name in [*FAMILY, RANDOM]:
        feats = cached(study, Path(run_dir) / "06", name)
        for views, f in ((f"{k} crops x {t} clips", feats), (f"1 crop x {t} clips", feats[:, centre])):
            rows.append(dict(encoder=name, views=views, **validation_scores(study, f)))
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(Path(out) / "screen_views.csv", index=False)
    print(table.to_markdown(index=False, floatfmt=".3f"))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
