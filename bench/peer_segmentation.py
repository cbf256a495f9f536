"""cmrlib's segmenter beside a peer a user can install in a minute: myopari's bundled ACDC model (PyPI, MIT; a
5.7 MB ONNX Tiramisu run by onnxruntime on the CPU), on the same real SAX stacks, neither trained on.

Run: `.venv/bin/python bench/peer_segmentation.py --run runs/default [--data $CMRLIB_DATA] [--out bench/out]`
after `make peer` (installs the optional `peer` extra: myopari without its GUI dependencies, onnxruntime and
scikit-image into the project's environment; never a dependency of cmrlib itself).

Cases:
- the UK Biobank demo's two SAX stacks at ED and ES against the ukbb_cardiac pipeline's segmentation (a network's
  pseudo-labels, Bai et al. 2018: a peer reference, not ground truth);
- notebook 01's held-out ACDC patients at ED and ES against ACDC's manual masks (cmrlib never trained on nor chose
  anything with them; which ACDC patients trained myopari's model is not documented, so its row may be optimistic).
The MVnet DICOM sample is not a case: it holds 2CH and 4CH views without contours, and the peer reads SAX only.

Prints Dice per structure, LV and RV volumes against the reference's and seconds per stack for both, where each
model's LV volume error lies (slices left empty, cavity called myocardium), and writes `peer_segmentation.csv` (per
stack) and `peer_segmentation_slices.csv` (per slice) into --out.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmrlib.labels import LV, MYO, RV  # noqa: E402
from cmrlib.measure import volume_curve  # noqa: E402
from cmrlib.record import Cine  # noqa: E402

PEER_LABELS = {1: RV, 2: MYO, 3: LV}  # myopari's TIRAMISU_ACDC classes (its model_label_map.json) -> canonical
STRUCTURES = {"LV": LV, "MYO": MYO, "RV": RV}


class Peer:
    """myopari's ACDC model with its own pre- and post-processing (percentile min-max, crop to the body and resize
    to 256, argmax, small components removed, mapped back), read from the installed package's files without
    importing its napari plugin."""

    def __init__(self):
        import onnxruntime as ort

        spec = importlib.util.find_spec("myopari")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("myopari is not installed: run `make peer` (the optional `peer` extra)")
        pkg = Path(list(spec.submodule_search_locations)[0])
        utils = importlib.util.spec_from_file_location("myopari_utils", pkg / "processors" / "functions_utils.py")
        self.fn = importlib.util.module_from_spec(utils)
        utils.loader.exec_module(self.fn)
        self.session = ort.InferenceSession(str(pkg / "Resources" / "tiramisu_acdc_fp32.onnx"),
                                            providers=["CPUExecutionProvider"])

    def labels(self, stack: np.ndarray) -> np.ndarray:
        """Canonical labels (Z, H, W) of one SAX stack (Z, H, W)."""
        data = self.fn.preprocess_data_array(np.transpose(stack, (1, 2, 0)))
        seg = self.fn.predict_data_model(data, self.session, num_classes=4, min_size_remove=800, onnx=True)
        out = np.zeros(seg.shape, dtype=np.uint8)
        for k, canon in PEER_LABELS.items():
            out[seg == k] = canon
        return np.transpose(out, (2, 0, 1))


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    """Dice of one structure over a stack (NaN when absent from both)."""
    x, y = a == label, b == label
    s = x.sum() + y.sum()
    return float(2 * (x & y).sum() / s) if s else float("nan")


def stacks(run: Path, data: Path | None) -> list[tuple[str, str, Cine]]:
    """(set, case, cine) for every real SAX case: the UK Biobank demo and notebook 01's held-out ACDC patients."""
    from cmrlib.io.real import SEGMENTER_STORE, segmenter_split
    from cmrlib.io.ukbb_cardiac import demo_folders, read_sax_keyframes
    from cmrlib.store import CohortStore

    out = []
    if data is not None and (data / "ukbb-demo").is_dir():
        for name, folder in demo_folders(data / "ukbb-demo").items():
            c = read_sax_keyframes(folder, name)
            if c is not None:
                out.append(("UK Biobank demo (pseudo-labels)", name, c))
    split = segmenter_split(run)
    if split:
        store = CohortStore(run / SEGMENTER_STORE)
        for cid in store.select(view="SAX", split="test"):
            out.append(("ACDC held-out (manual masks)", cid, store.read(cid)))
    return out


def lv_by_slice(pred: np.ndarray, truth: np.ndarray, spacing) -> list[dict]:
    """Where a stack's LV volume error lies: per slice with LV in either, its LV in mL (model, reference), and the
    reference's LV the model calls myocardium or background."""
    ml = float(np.prod(spacing)) / 1000
    ref_lv = truth == LV
    return [dict(slice=z, LV_ml=(pred[z] == LV).sum() * ml, LV_ml_ref=ref_lv[z].sum() * ml,
                 ref_LV_as_MYO_ml=(ref_lv[z] & (pred[z] == MYO)).sum() * ml,
                 ref_LV_as_background_ml=(ref_lv[z] & (pred[z] == 0)).sum() * ml)
            for z in range(len(truth)) if ref_lv[z].any() or (pred[z] == LV).any()]


def score(name: str, labels_of, cine: Cine) -> tuple[list[dict], list[dict]]:
    """One row per labelled frame (Dice per structure, LV and RV volumes and the seconds the stack took) and one
    per slice of each (`lv_by_slice`)."""
    rows, slices = [], []
    for t in np.flatnonzero(cine.labelled):
        t0 = time.perf_counter()
        pred = labels_of(cine, t)
        sec = time.perf_counter() - t0
        truth = cine.labels[t]
        row = dict(model=name, frame="ED" if t == cine.ed else "ES" if t == cine.es else str(t), seconds=sec)
        for s, k in STRUCTURES.items():
            row[f"dice_{s}"] = dice(pred, truth, k)
        for s, k in (("LV", LV), ("RV", RV)):
            row[f"{s}_ml"] = float(volume_curve(pred[None], cine.spacing, k)[0])
            row[f"{s}_ml_ref"] = float(volume_curve(truth[None], cine.spacing, k)[0])
        rows.append(row)
        slices += [dict(model=name, frame=row["frame"], **r) for r in lv_by_slice(pred, truth, cine.spacing)]
    return rows, slices


def missed_slices(slices: pd.DataFrame) -> pd.DataFrame:
    """Per set and model: the reference's LV (mL per stack) on slices where the model finds under a tenth of it
    (an end of the stack left out), and the reference's LV it calls myocardium on the others."""
    empty = slices["LV_ml"] < 0.1 * slices["LV_ml_ref"]
    per = slices.assign(on_empty_slices=slices["LV_ml_ref"].where(empty, 0.0),
                        as_MYO_elsewhere=slices["ref_LV_as_MYO_ml"].where(~empty, 0.0),
                        empty_slices=empty.astype(int))
    cols = ["empty_slices", "on_empty_slices", "as_MYO_elsewhere"]
    stacks = per.groupby(["set", "model", "case", "frame"])[cols].sum()
    return stacks.groupby(["set", "model"]).mean().round(2)


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module="myopari")  # its scikit-image call's notice
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/default", help="a run folder with predictors/segmentation.predictor")
    ap.add_argument("--data", default=None, help="the real-data root (default: $CMRLIB_DATA)")
    ap.add_argument("--out", default="bench/out", help="folder for peer_segmentation.csv")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from cmrlib import predictor
    from cmrlib.utils import data_root

    torch.set_num_threads(args.threads)
    run = Path(args.run)
    ours = predictor.load(run / "predictors" / predictor.file_name(predictor.SEGMENTER))
    peer = Peer()
    cases = stacks(run, data_root(args.data))
    if not cases:
        raise SystemExit("no real SAX stacks: give --data (or set $CMRLIB_DATA) and a run with notebook 01's ACDC split")
    rows, slices = [], []

    def ours_of(c: Cine, t: int) -> np.ndarray:
        return ours.labels(Cine(subject=c.subject, view="SAX", pixels=c.pixels[t:t + 1], spacing=c.spacing,
                                frame_times=c.frame_times[t:t + 1]))[0]

    ours_of(cases[0][2], 0)  # warm-up: the first call builds what later calls reuse
    ours.forget()  # and the labels it kept, so the first stack is timed too
    for kind, case, cine in cases:
        for name, fn in (("cmrlib", ours_of), ("myopari 0.1.6", lambda c, t: peer.labels(c.pixels[t]))):
            frames, by_slice = score(name, fn, cine)
            rows += [dict(set=kind, case=case, **r) for r in frames]
            slices += [dict(set=kind, case=case, **r) for r in by_slice]
    df, by_slice = pd.DataFrame(rows), pd.DataFrame(slices)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "peer_segmentation.csv", index=False)
    by_slice.to_csv(out / "peer_segmentation_slices.csv", index=False)
    df["LV_abs_ml"] = (df["LV_ml"] - df["LV_ml_ref"]).abs()
    df["RV_abs_ml"] = (df["RV_ml"] - df["RV_ml_ref"]).abs()
    cols = ["dice_LV", "dice_MYO", "dice_RV", "LV_abs_ml", "RV_abs_ml", "seconds"]
    summary = df.groupby(["set", "model"])[cols].mean().round(3)
    summary.insert(0, "stacks", df.groupby(["set", "model"]).size())
    pd.set_option("display.width", 200)
    print(summary.to_string())
    print("\nwhere the LV goes, mL per stack: the reference's LV on slices a model leaves (almost) empty of it, and "
          "the reference's LV it calls myocardium on the others")
    print(missed_slices(by_slice).to_string())
    print(f"\nper stack: {out / 'peer_segmentation.csv'}, per slice: {out / 'peer_segmentation_slices.csv'}; "
          "mean absolute volume errors in mL against the reference's")


if __name__ == "__main__":
    main()
