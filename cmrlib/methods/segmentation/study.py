"""Notebook 01's parameters and its training as a Study: what `cmrlib fit segmentation` runs (the phantom SAX and
long-axis segmenters, calibrated on validation cines as the notebook does). The notebook's evaluation (phantom,
ACDC, fine-tuning) stays in the notebook."""
from __future__ import annotations

import time
from typing import ClassVar

from ...study import Study as Base
from .learner import as_model, dataloaders, fit, model_file
from .predict import calibrate_prior
from .recipes import recipe


class Study(Base):
    """Notebook 01: `train`."""

    method = "segmentation"
    number = "01"
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir
        "data_dir": None,  # real-data root; None: $CMRLIB_DATA (ACDC sections are skipped when absent)
        "max_test_cines": 1,  # phantom test cines scored per view (None: all)
        "acdc_store": None,  # ingested ACDC store; None: the cohort if 00 ingested ACDC, else ingest into {run_dir}/01/acdc
        "acdc_limit": 10,  # ingest only the first N ACDC patients (None: all 100)
        "n_finetune": 4,  # real patients in the fine-tune vs from-scratch comparison
        "retrain": False,  # True: train again even where {run_dir}/01/models holds a model trained with these settings
        # model
        "threads": 1,  # torch CPU threads (on a busy shared CPU, 2 threads run several times slower than 1)
        "workers": 1,  # Dask worker processes on this machine for the data-parallel steps (1: run them in this process)
        "scheduler": None,  # a Dask scheduler instead: address (tcp://host:8786) or scheduler file; "local": a LocalCluster
        "width": 0.125,  # TernausNet11 channel multiplier (1.0 is the paper's 64..512 encoder, 32 decoder filters)
        "size": 64,  # model grid side in px (multiple of 32)
        "spacing_mm": 3.6,  # model pixel spacing; size x spacing_mm is the field of view around the image centre
        "bs": 16,
        "lr": 1e-2,
        "pretrained": False,  # ImageNet VGG11 encoder: needs width 1.0 and the weights in the local torch cache
        "bf16": True,  # bfloat16 autocast while training on the CPU (about 1.5-2x faster on AVX512-BF16 CPUs)
        "augmentation": {"sax": "randomised", "lax": "phantom", "acdc": "real"},  # recipe per model: methods.segmentation.RECIPES
        "epochs_sax": 1,  # phantom SAX model
        "epochs_lax": 1,  # phantom long-axis (2CH + 4CH) model
        "calibrate_cines": 4,  # validation cines per view that calibrate each model's decision (per-class log-prior); 0: off
        "balance_lax": True,  # long-axis model: class-weighted cross-entropy, so the small RV and RA are learned too
        "frame_step": 25,  # phantom training frames: every k-th frame of each cine, plus ED and ES
        "max_frames": None,  # at most this many training frames per model (a seeded subset; validation: a quarter); None: all
        "epochs_acdc": 1,
        "epochs_finetune": 1,
    }

    def train(self, finish) -> list[dict]:
        """The SAX model and the 2CH + 4CH model, each trained then calibrated on validation cines; `finish(learn,
        path)` exports it and gives (validation loss, file name); one summary row per model."""
        p, store = self.p, self.store
        data_kw = dict(size=p["size"], spacing=p["spacing_mm"], bs=p["bs"], seed=p["seed"], max_frames=p["max_frames"],
                       progress=False)
        rows = []
        for name, views, epochs, balance in (("sax", ["SAX"], p["epochs_sax"], False),
                                             ("lax", ["2CH", "4CH"], p["epochs_lax"], p["balance_lax"])):
            aug = recipe(p["augmentation"][name])
            dls = dataloaders(store, views, frame_step=p["frame_step"], **data_kw, **aug)
            t0 = time.perf_counter()
            learn = fit(dls, epochs, p["lr"], balance=balance, width=p["width"], pretrained=p["pretrained"],
                        bf16=p["bf16"])
            ids = store.select(views, "valid", p["calibrate_cines"]) if p["calibrate_cines"] else []
            if ids:
                as_model(learn).log_prior = calibrate_prior(learn, store, ids, progress=False)[0]
            train_s = time.perf_counter() - t0
            valid_loss, file = finish(learn, model_file(self.out, name.upper()))
            rows.append(dict(model=name, train_s=train_s, valid_loss=valid_loss, file=file))
        return rows
