"""Notebook 02's parameters and its training as a Study: what `cmrlib fit edes` runs (every method in `methods` on
the same sequences, seed and schedule). The notebook's evaluation (frame errors, real cines) stays in the
notebook."""
from __future__ import annotations

from typing import ClassVar

from ...study import Study as Base
from .data import dataloaders, seq_items
from .learner import fit, model_file


class Study(Base):
    """Notebook 02: `train`."""

    method = "edes"
    number = "02"
    PARAMS: ClassVar[dict] = {
        # study
        **Base.RUN,  # profile, seed, run_dir, figures_dir
        "data_dir": None,  # real-data root; None: $CMRLIB_DATA (real-data sections are skipped when absent)
        "views": ["SAX", "2CH", "4CH"],  # one model is trained over all of them; the table reports each and all together
        "max_cines": None,  # at most this many cines per split and view (None: all)
        "methods": ["CNN+Reg", "TempReg-Net w/o TSC", "TempReg-Net"],
        "seg_dir": None,  # notebook 01's exported segmenters; None: {run_dir}/01/models
        "n_show": 4,  # test cines drawn in the curve figure
        "sharp_plateau": 2,  # the breakdown keeps test cines whose ED volume plateau is at most this many frames wide
        "retrain": False,  # True: train again even where {run_dir}/02/models holds a model trained with these settings
        # model
        "threads": 2,  # torch CPU threads
        "size": 32,  # frames are fitted into size x size
        "zoom": 1.6,  # magnification about the frame centre after fitting (the heart sits near the middle)
        "widths": [8, 16, 32],  # CNN trunk channels per stage (ResNet-18: [64, 128, 256, 512])
        "blocks": [1, 1, 1],  # residual blocks per stage (ResNet-18: [2, 2, 2, 2])
        "hidden": 16,  # LSTM hidden units
        "bidirectional": True,  # False: the unidirectional LSTM of the paper
        "cyclic": True,  # the LSTM reads the cycle three times and keeps the middle pass (context on both sides of every frame)
        "motion": True,  # second input channel: frame minus the sequence's mean frame
        "dropout": 0.0,  # on the per-frame features
        "epochs": 2,
        "lr": 3e-3,
        "bs": 8,  # sequences per batch (NaN-padded to the longest)
        "alpha": 1e-4,  # L2 weight, applied as coupled weight decay (the gradient of alpha/2 * sum of squared weights)
        "beta": 5.0,  # weight of the temporal structured loss
        "delta": 3.0,  # eq. 4 exponent in systole
        "upsilon": 0.3333333333,  # eq. 4 exponent in diastole
    }

    def train(self, finish) -> list[dict]:
        """Each ED/ES method trained on the training and validation sequences; `finish(learn, path)` exports it and
        gives (validation loss, file name); one summary row per method."""
        p, store = self.p, self.store
        items = [it for split in ("train", "valid")
                 for it in seq_items(store, store.select(p["views"], split, p["max_cines"], interleave=True),
                                     p["size"], split, zoom=p["zoom"])]
        model_kw = {k: p[k] for k in ("widths", "blocks", "hidden", "bidirectional", "cyclic", "motion", "dropout")}
        rows = []
        for m in p["methods"]:
            dls = dataloaders(items, bs=p["bs"], delta=p["delta"], upsilon=p["upsilon"], seed=p["seed"])
            learn, row = fit(dls, m, p["epochs"], p["lr"], p["seed"], beta=p["beta"], alpha=p["alpha"], path=self.out,
                             **model_kw)
            valid_loss, file = finish(learn, self.out / model_file(m))
            rows.append(dict(row, valid_loss=valid_loss, model=file))
        return rows
