"""CUSSP's gate at another number of Barlow Twins pretraining steps, screened on validation only (not a speed bench):
both encoders pretrained through notebook 04's own path (its pools, seeds and tags) with `pretrain_steps` set, then
the notebook's gate, a linear probe of MR on each frozen encoder beside its random start (fit on the training cines,
scored on the validation cines). The run folder's own encoders are never touched: the notebook folder is OUT, which
holds copies of the run's 04 patches and labelled stores (cp -al RUN_DIR/04/{labelled,pool,patches_*} OUT/04/).

Usage: python bench/screen_cussp_steps.py OUT STEPS
OUT is a run folder with notebooks 00 and 01 of the default profile (copied) and those 04 files.
"""
from __future__ import annotations

import sys
import time

import pandas as pd

from cmrlib import runner
from cmrlib.methods.cussp import Study
from cmrlib.methods.cussp.evaluate import gate_rows
from cmrlib.utils import seed_for


def main(run_dir: str, steps: int) -> None:
    p = Study.parameters(runner.load_profile("default"), "default", {"pretrain_steps": steps, "threads": 1,
                                                                      "workers": 1})
    p.update(run_dir=run_dir, figures_dir=f"{run_dir}/screen_figures")
    study = Study(p)
    t0 = time.perf_counter()
    encoders = study.pretrained
    print(f"{steps} steps: both encoders in {time.perf_counter() - t0:.0f} s")
    nets = {inp: {"Barlow Twins": encoders.nets.get(inp), "random": study._random_encoder(inp), "supervised": None}
            for inp in ("cycle", "window")}
    gate = gate_rows(study.inputs, nets, seed_for(p["seed"], "cussp", "probe"))
    print(pd.DataFrame(encoders.logs).to_string(index=False))
    print(gate.pivot(index="input", columns="encoder", values="valid_auc").round(3).to_string())


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
