"""Notebook 03's parameters and its training as a Study: what `cmrlib fit mvnet` runs (convention A, stage 1 then
stage 2, per view). The notebook's evaluation (MAPSE, e', observers, real cines) stays in the notebook."""
from __future__ import annotations

from typing import ClassVar

from ...distributed import rank
from ...learn import config_from
from ...study import Study as Base
from .data import load_cines, tracks_from_cines
from .learner import MVConfig, fit


class Study(Base):
    """Notebook 03: `train`."""

    method = "mvnet"
    number = "03"
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir
        "data_dir": None,            # real-data root (mvnet-dicom-sample/, ukbb-demo-lax/); None -> $CMRLIB_DATA
        "views": ["2CH", "4CH"],
        "max_train": None,           # cap on training cines per view (None: all)
        "max_test": None,            # cap on test cines per view
        "eval_splits": ["test"],     # splits evaluated (smoke adds "valid": a tiny cohort has < 3 test subjects)
        "variability": True,         # train on convention B only and mixed, evaluate each on each (Fig. 6)
        "variability_views": None,   # views for the convention experiment (None: all of `views`)
        "real_cines": True,          # run the tracker on the real DICOM / NIfTI cines when present
        "retrain": False,            # True: train again even where {run_dir}/03/models holds a tracker trained with these settings
        # model
        "threads": 1,                # torch CPU threads (2 threads on a shared 2-core CPU can be 20x slower)
        "arch": "tiny",              # tiny | resnet18 | resnet34 | resnet50 (the paper's)
        "widths": [16, 32, 64, 128],  # tiny only
        "blocks": [1, 1, 1, 1],      # tiny only
        "head": "softargmax",        # tiny only: pool (linear on pooled features) | flat | softargmax
        "coords": False,             # tiny only: CoordConv input channels
        "pretrained": False,         # ImageNet init (torchvision archs; fails clearly offline)
        "epochs1": 2,                # stage-1 epochs
        "epochs2": 2,                # stage-2 epochs
        "frames_per_cine": 10,       # frames drawn per training cine and epoch (None: all)
        "bs": 32,
        "lr": 3e-3,
        "schedule": "one_cycle",     # one_cycle | fit (constant lr, the paper's Adam 1e-4)
        "perturb_mm": 6.0,           # stage-2 training standardises from points moved by N(0, u * perturb_mm), u ~ U(0, 1)
        "n_refine": 2,               # stage-2 passes (2 gives 1+2+2)
        "window2": 2,                # stage-2 soft-argmax at inference: +-cells around the peak (None: whole map, centre-biased)
        "smooth": "valid",           # Savitzky-Golay window (frames) over each pass's track; None: raw points; "valid": window and tta chosen on validation cines
        "tta": 3.0,                  # last stage-2 pass: mean of 5 crops shifted by 0 or +-N standardised px (None: one crop)
        "velocity_window": 5,        # Savitzky-Golay window (frames) for the valve velocity; None: central differences
        "variability_epochs": None,  # [epochs1, epochs2] for the convention models (None: as the main model, which is reused)
    }

    def train(self, finish=None) -> list[dict]:
        """Both stages of each view's tracker (written by process 0); one row per stage with the validation loss
        `fit` logs (with several processes, process 0's share of the validation cines)."""
        p = self.p
        cfg = config_from(MVConfig, p, smooth=None if p["smooth"] == "valid" else p["smooth"])
        rows = []
        for v in p["views"]:
            train, valid = (tracks_from_cines(load_cines(self.store, v, s, p["max_train"]), "obsA")
                            for s in ("train", "valid"))
            _, log = fit(train, valid, cfg, v, self.out if rank() == 0 else None, "A", quiet=True)
            rows += [dict(r, model=f"{v} stage {r['stage']}") for r in log.to_dict("records")]
        return rows
