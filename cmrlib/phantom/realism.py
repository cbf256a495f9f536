"""How real does the phantom look? Domain-classifier AUC, image statistics, volume tables and a gallery.

Real references (never copied into the project; read in place): ACDC training SAX ED/ES volumes with
masks, the UK-Biobank-style 4CH cines in ukbb-demo-lax. Frames are compared at matched spacing and size
(`match`): resampled to `MM` mm pixels and centre-cropped/padded to `SIZE` x `SIZE`.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .. import labels as L
from ..transforms import degrade, percentile_range
from ..utils import seeded

MM, SIZE = 1.8, 96


# ---- real data ------------------------------------------------------------------------------
def acdc_patients(root: str | Path, n: int | None = None) -> list:
    """ACDC training patients as canonical SAX `Cine`s (cmrlib.io reader; ED/ES labelled, GT truths in meta)."""
    from ..io import read_acdc_patient

    return [read_acdc_patient(f) for f in sorted(p for p in Path(root).glob("patient*") if p.is_dir())[:n]]


def dicom_cine(folder: str | Path) -> tuple[np.ndarray, tuple[float, float]] | None:
    """A single-slice 4CH DICOM cine folder as ((T, H, W) float32, (sy, sx)) through `cmrlib.io`."""
    from ..io import read_dicom_series

    c = read_dicom_series(folder, "4CH")[0]
    return c.pixels, c.spacing


def ukbb_4ch(root: str | Path) -> list[tuple[np.ndarray, tuple[float, float]]]:
    """UK-Biobank-style 4CH cines: list of ((T, H, W) float32, (sy, sx))."""
    from ..io import read_nifti_cine

    cines = [read_nifti_cine(p, view="4CH") for p in sorted(Path(root).glob("*/la_4ch.nii.gz"))]
    return [(c.pixels, c.spacing) for c in cines]


# ---- matching ------------------------------------------------------------------------------
def match(frame: np.ndarray, spacing: tuple[float, float], mm: float = MM, size: int = SIZE,
          centre: tuple[float, float] | None = None, labels: bool = False) -> np.ndarray:
    """Resample a 2D frame to `mm` pixels and crop/pad `size` x `size` around `centre` (row, col; default middle)."""
    sy, sx = spacing
    H, W = frame.shape
    interp = cv2.INTER_NEAREST if labels else cv2.INTER_AREA
    img = cv2.resize(frame.astype(np.float32), (max(1, round(W * sx / mm)), max(1, round(H * sy / mm))),
                     interpolation=interp)
    cy, cx = (np.array(img.shape) / 2) if centre is None else (centre[0] * sy / mm, centre[1] * sx / mm)
    r0, c0 = int(round(cy - size / 2)), int(round(cx - size / 2))
    out = np.zeros((size, size), np.float32)
    rs, cs = slice(max(r0, 0), min(r0 + size, img.shape[0])), slice(max(c0, 0), min(c0 + size, img.shape[1]))
    out[rs.start - r0:rs.stop - r0, cs.start - c0:cs.stop - c0] = img[rs, cs]
    return out


def heart_centre(mask: np.ndarray) -> tuple[float, float] | None:
    """(row, col) centroid of the labelled heart in a 2D mask (None when empty)."""
    r, c = np.nonzero(mask)
    return (float(r.mean()), float(c.mean())) if len(r) else None


# ---- statistics ----------------------------------------------------------------------------
def image_stats(frames, labels=None, spacing: tuple[float, float] | None = None) -> pd.DataFrame:
    """Per frame: blood/myocardium means, contrast, SNR, CNR and edge sharpness (labels) or label-free stats.

    frames, labels: sequences of 2D arrays (labels canonical). SNR = blood mean / noise SD, with the noise SD
    estimated from the median absolute Laplacian (robust to anatomy); edge sharpness = mean gradient across the
    blood/myocardium border divided by their contrast, in 1/mm (higher = sharper).
    """
    rows = []
    for k, f in enumerate(frames):
        f = np.asarray(f, np.float32)
        px = 1.0 if spacing is None else float(np.mean(spacing))
        lap = cv2.Laplacian(f, cv2.CV_32F, ksize=1)
        noise = float(np.median(np.abs(lap)) / 0.6745 / np.sqrt(20.0))
        p1, p50, p99 = np.percentile(f, [1, 50, 99])
        row = dict(frame=k, p50_rel=float(p50 / max(p99, 1e-6)), noise_rel=noise / max(p99, 1e-6))
        if labels is not None:
            lab = np.asarray(labels[k])
            blood, myo = lab == L.LV, lab == L.MYO
            if blood.sum() >= 20 and myo.sum() >= 20:
                b, m = float(np.median(f[blood])), float(np.median(f[myo]))
                border = blood & (cv2.dilate(myo.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
                gy, gx = np.gradient(f)
                grad = float(np.hypot(gx, gy)[border].mean()) / px
                row.update(blood=b / p99, myo=m / p99, contrast=(b - m) / (b + m + 1e-6), snr=b / max(noise, 1e-6),
                           cnr=(b - m) / max(noise, 1e-6), blood_cv=float(f[blood].std() / max(b, 1e-6)),
                           sharpness_per_mm=grad / max(b - m, 1e-6))
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, name: str) -> pd.Series:
    """Median (IQR) of each statistic, one column per dataset."""
    cols = [c for c in df.columns if c != "frame"]
    return pd.Series({c: f"{df[c].median():.3g} ({df[c].quantile(.25):.3g}-{df[c].quantile(.75):.3g})" for c in cols},
                     name=name)


# ---- domain classifier ----------------------------------------------------------------------
def _net():
    import torch.nn as nn

    def blk(i, o):
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*blk(1, 16), *blk(16, 32), *blk(32, 64), *blk(64, 64), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, 1))


def domain_auc(phantom_frames, real_frames, seed: int = 0, groups=None, folds: int = 5, epochs: int = 8,
               max_per_class: int = 300) -> float:
    """Cross-validated ROC-AUC of a small CNN telling phantom from real frames (0.5 = indistinguishable).

    Frames are 2D arrays already matched in spacing and size (see `match`); each is percentile-normalised;
    at most `max_per_class` frames per class are used (random, seeded).
    `groups` (one id per frame, phantom frames first) keeps a subject's frames in one fold (no leakage);
    classes are balanced by weighting. Flips/rotations by 90 degrees augment training.
    """
    import torch
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    rng = np.random.default_rng(seed)
    X = np.stack([percentile_range(f) for f in list(phantom_frames) + list(real_frames)])[:, None]
    y = np.r_[np.zeros(len(phantom_frames)), np.ones(len(real_frames))].astype(np.float32)
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    keep = np.concatenate([np.sort(rng.permutation(np.nonzero(y == k)[0])[:max_per_class]) for k in (0, 1)])
    X, y, g = X[keep], y[keep], g[keep]
    cv = StratifiedGroupKFold(n_splits=min(folds, len(set(g[y == 1]))), shuffle=True, random_state=seed)
    scores = np.zeros(len(y))
    with seeded(seed):  # the networks' initial weights
        for tr, te in cv.split(X, y, g):
            net = _net()
            opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
            w = torch.tensor(np.where(y[tr] == 1, len(tr) / (2 * y[tr].sum()), len(tr) / (2 * (1 - y[tr]).sum())),
                             dtype=torch.float32)
            xt, yt = torch.tensor(X[tr]), torch.tensor(y[tr])
            for _ in range(epochs):
                net.train()
                for b in np.array_split(rng.permutation(len(tr)), max(1, len(tr) // 32)):
                    xb = torch.rot90(xt[b], int(rng.integers(4)), (2, 3))
                    xb = xb.flip(3) if rng.random() < 0.5 else xb
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xb)[:, 0], yt[b], weight=w[b])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            net.eval()
            with torch.no_grad():
                scores[te] = net(torch.tensor(X[te]))[:, 0].numpy()
    return float(roc_auc_score(y, scores))


# ---- what gives the phantom away? ------------------------------------------------------------
def _heart_zone(lab: np.ndarray, px: int = 5) -> np.ndarray:
    """The labelled heart grown by `px` pixels (blood, wall and the edge just outside)."""
    return cv2.dilate((np.asarray(lab) > 0).astype(np.uint8), np.ones((2 * px + 1,) * 2, np.uint8)) > 0


def _rank(f: np.ndarray) -> np.ndarray:
    """Histogram-equalised frame: keeps only the order of intensities, not their distribution."""
    return cv2.equalizeHist((percentile_range(f).clip(0, 1) * 255).astype(np.uint8)).astype(np.float32)


PROBES = {  # applied alike to phantom and real frames before the domain classifier sees them
    "as is": lambda f, lab: f,
    "blurred (Gaussian sigma 1.5 px)": lambda f, lab: cv2.GaussianBlur(f, (0, 0), 1.5),
    "half resolution": lambda f, lab: degrade(f, 2.0),
    "histogram-equalised": lambda f, lab: _rank(f),
    "heart only (body blanked)": lambda f, lab: np.where(_heart_zone(lab), f, 0).astype(np.float32),
    "body only (heart blanked)": lambda f, lab: np.where(_heart_zone(lab), np.median(f), f).astype(np.float32),
    "heart only, blurred": lambda f, lab: cv2.GaussianBlur(np.where(_heart_zone(lab), f, 0).astype(np.float32), (0, 0), 1.5),
}


def probe_aucs(phantom: dict, real: dict, probes: dict | None = None, seed: int = 0, **kw) -> pd.DataFrame:
    """Domain AUC after each probe removes one kind of information (SAX frames with labels, as `phantom_frames`).

    A probe that drops the AUC toward 0.5 removed what the classifier used to tell the phantom apart."""
    from fastprogress import progress_bar

    groups = phantom["sax_groups"] + real["sax_groups"]
    side = lambda d, fn: [fn(f, lab) for f, lab in zip(d["sax"], d["sax_labels"])]
    rows = [dict(probe=name, auc=domain_auc(side(phantom, fn), side(real, fn), seed, groups=groups, **kw))
            for name, fn in progress_bar(list((probes or PROBES).items()))]
    return pd.DataFrame(rows)


# ---- volumes by group -------------------------------------------------------------------------
ACDC_GROUPS = {"NOR": "healthy", "MINF": "MI", "DCM": "HFrEF", "HCM": "HCM", "RV": "RV abnormality"}


def acdc_volumes(patients: list) -> pd.DataFrame:
    """Per ACDC patient (canonical `Cine`): LV/RV EDV, ESV, EF and LV mass, the reader's ground-truth meta."""
    rows = []
    for c in patients:
        m = c.meta
        rows.append(dict(source="ACDC", group=m["group"], condition=ACDC_GROUPS.get(m["group"], m["group"]),
                         lv_edv_ml=m["LVEDV"], lv_esv_ml=m["LVESV"], lv_ef=m["LVEF"], rv_edv_ml=m["RVEDV"],
                         rv_esv_ml=m["RVESV"], rv_ef=m["RVEF"], lv_mass_g=m["LVM"]))
    return pd.DataFrame(rows)


def volume_table(phantom_manifest: pd.DataFrame, acdc: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean +- SD of LV/RV EDV, EF and LV mass by condition, phantom beside ACDC."""
    cols = ["lv_edv_ml", "lv_esv_ml", "lv_ef", "rv_edv_ml", "rv_ef", "lv_mass_g"]
    ph = phantom_manifest.drop_duplicates("subject").assign(source="phantom")
    parts = [ph[["source", "condition"] + cols]]
    if acdc is not None:
        parts.append(acdc[["source", "condition"] + cols])
    df = pd.concat(parts)
    agg = df.groupby(["condition", "source"])[cols].agg(["mean", "std"])
    out = pd.DataFrame({c: agg[(c, "mean")].round(1).astype(str) + " ± " + agg[(c, "std")].round(1).astype(str)
                        for c in cols})
    out.insert(0, "n", df.groupby(["condition", "source"]).size())
    return out


# ---- gallery --------------------------------------------------------------------------------
COLOURS = np.array([[0, 0, 0, 0], [1, 0.2, 0.2, .35], [1, 1, 0, .3], [0.2, .6, 1, .35], [0, 1, 0, .3], [1, 0, 1, .3]])


def _mr_cine(store, view="4CH"):
    m = store.manifest()
    m = m[m.view == view]
    mr = m[m.mr_grade > 0].sort_values("mr_grade", ascending=False) if "mr_grade" in m else m.iloc[:0]
    return store.read((mr if len(mr) else m).cine_id.iloc[0])


def real_examples(root: Path | None) -> dict:
    """A real UK-Biobank-style 4CH frame and a real ACDC mid-ventricular slice with its labels, when the data root
    holds them: `gallery`'s real columns (`real_4ch`, `real_sax`)."""
    four = sax = None
    if root is not None and (root / "ukbb-demo-lax" / "1" / "la_4ch.nii.gz").exists():
        from ..io import read_nifti_cine

        c = read_nifti_cine(root / "ukbb-demo-lax" / "1" / "la_4ch.nii.gz", view="4CH")
        four = (c.pixels[0], c.spacing)
    if root is not None and (root / "acdc" / "training" / "patient001").exists():
        from ..io import read_acdc_patient

        c = read_acdc_patient(root / "acdc" / "training" / "patient001")
        z = c.pixels.shape[1] // 2
        sax = (c.pixels[0, z], c.labels[0, z], c.spacing[1:])
    return dict(real_4ch=four, real_sax=sax)


def gallery(store, real_4ch=None, real_sax=None):
    """Figure: each view at ED/ES with labels, an MR jet, phantom vs real 4CH and SAX, blood/myocardium histograms.

    real_4ch: (frame, spacing) of a real 4CH frame; real_sax: (frame, mask, spacing) of a real ACDC slice.
    """
    import matplotlib.pyplot as plt

    m = store.manifest()
    subj = m.subject.iloc[0]
    fig, ax = plt.subplots(3, 4, figsize=(16, 12))
    for j, view in enumerate(("SAX", "2CH", "4CH")):
        c = store.read(f"{subj}_{view}")
        for i, (t, name) in enumerate(((c.ed, "ED"), (c.es, "ES"))):
            a = ax[i, j] if j < 2 else ax[i, 2]
            img, lab = (c.pixels[t], c.labels[t]) if not c.is_stack else (c.pixels[t, c.pixels.shape[1] // 2],
                                                                           c.labels[t, c.pixels.shape[1] // 2])
            a.imshow(img, cmap="gray")
            a.imshow(COLOURS[lab])
            if view in ("2CH", "4CH"):
                p = c.landmarks["truth"][t]
                a.plot(p[:, 0], p[:, 1], "c+", ms=8)
            a.set_title(f"phantom {view} {name}")
    mr = _mr_cine(store)
    for i, (frac, name) in enumerate(((0.15, "mid-systole"), (0.55, "diastole"))):
        t = (mr.ed + int(round(frac * mr.n_frames))) % mr.n_frames
        ax[i, 3].imshow(mr.pixels[t], cmap="gray")
        ax[i, 3].set_title(f"4CH {name}, MR grade {mr.meta.get('mr_grade')}")
    sax = store.read(f"{subj}_SAX")
    z = sax.pixels.shape[1] // 2
    ph_sax = (sax.pixels[sax.ed, z], sax.labels[sax.ed, z], sax.spacing[1:])
    for k, (name, ref) in enumerate((("4CH", real_4ch), ("SAX", real_sax))):
        a = ax[2, 2 * k]
        if name == "4CH":
            c4 = store.read(f"{subj}_4CH")
            mine = match(c4.pixels[c4.ed], c4.spacing, size=128)
            theirs = match(*ref, size=128) if ref is not None else np.zeros_like(mine)
        else:
            mine = match(ph_sax[0], ph_sax[2], centre=heart_centre(ph_sax[1]), size=128)
            theirs = (match(ref[0], ref[2], centre=heart_centre(ref[1]), size=128) if ref is not None
                      else np.zeros_like(mine))
        a.imshow(np.hstack([percentile_range(mine), percentile_range(theirs)]), cmap="gray", vmin=0, vmax=1)
        a.set_title(f"{name}: phantom | real" + ("" if ref is not None else " (real data absent)"))
    h = ax[2, 1]
    f, lab, _ = ph_sax
    for name, img, msk, st in (("phantom", f, lab, "-"),) + ((("ACDC", real_sax[0], real_sax[1], "--"),) if real_sax else ()):
        img = percentile_range(img)
        for k, col in ((L.LV, "r"), (L.MYO, "y")):
            h.hist(img[msk == k], bins=40, range=(-0.2, 1.3), density=True, histtype="step", ls=st, color=col,
                   label=f"{name} {L.NAMES[k]}")
    h.legend(fontsize=8)
    h.set_title("SAX intensity (1-99 % normalised)")
    ax[2, 3].axis("off")
    for a in ax.ravel()[:-1]:
        if a is not h:
            a.axis("off")
    fig.tight_layout()
    return fig


# ---- report -----------------------------------------------------------------------------------
def phantom_frames(n: int, seed: int = 0, config=None):
    """Matched phantom frames: SAX mid-ventricular ED/ES slices (heart-centred) and 4CH frames, with ids."""
    from .cohort import simulate_subject
    from .subjects import PhantomConfig

    cfg = PhantomConfig.make(config or dict(n_frames=20))
    sax, sax_lab, sax_g, lax, lax_g = [], [], [], [], []
    for i in range(n):
        c = simulate_subject(i, seed, cfg, views=("SAX", "4CH"))
        s = c["SAX"]
        Z = s.pixels.shape[1]
        for t in (s.ed, s.es):
            for z in range(Z // 3, 2 * Z // 3):
                if (s.labels[t, z] == L.LV).any():
                    cen = heart_centre(s.labels[t, z])
                    sax.append(match(s.pixels[t, z], s.spacing[1:], centre=cen))
                    sax_lab.append(match(s.labels[t, z], s.spacing[1:], centre=cen, labels=True))
                    sax_g.append(f"p{i}")
        f = c["4CH"]
        for t in range(0, f.n_frames, max(1, f.n_frames // 5)):
            lax.append(match(f.pixels[t], f.spacing, size=128))
            lax_g.append(f"p{i}")
    return dict(sax=sax, sax_labels=sax_lab, sax_groups=sax_g, lax=lax, lax_groups=lax_g)


def real_frames(data_root: str | Path, n_acdc: int | None = None):
    """Matched real frames: ACDC mid-ventricular ED/ES slices (mask-centred) and real 4CH frames (the two
    UK-Biobank-style cines plus the MVnet Siemens DICOM 4CH cine when present)."""
    root = Path(data_root)
    sax, sax_lab, sax_g, lax, lax_g = [], [], [], [], []
    for c in acdc_patients(root / "acdc" / "training", n_acdc):
        for t in (c.ed, c.es):
            Z = c.pixels.shape[1]
            for z in range(Z // 3, 2 * Z // 3):
                if (c.labels[t, z] == L.LV).any():
                    cen = heart_centre(c.labels[t, z])
                    sax.append(match(c.pixels[t, z], c.spacing[1:], centre=cen))
                    sax_lab.append(match(c.labels[t, z], c.spacing[1:], centre=cen, labels=True))
                    sax_g.append(c.subject)
    cines = ukbb_4ch(root / "ukbb-demo-lax")
    extra = dicom_cine(root / "mvnet-dicom-sample" / "4ch") if (root / "mvnet-dicom-sample" / "4ch").exists() else None
    for k, (cine, sp) in enumerate(cines + ([extra] if extra else [])):
        for t in range(0, len(cine), 5):
            lax.append(match(cine[t], sp, size=128))
            lax_g.append(f"u{k}")
    return dict(sax=sax, sax_labels=sax_lab, sax_groups=sax_g, lax=lax, lax_groups=lax_g)


# ACDC's acquisition for the phantom: its in-plane pixel sizes (interquartile 1.37-1.56 mm, so both domains pass
# the same resampling to `MM`) and its sharper reconstructions (more of k-space kept than the cohort's 0.36-0.62)
ACDC_ACQUISITION = dict(pixel_mm=(1.37, 1.68), matrix=240, kspace=(0.8, 1.0))
# ... and a textured thorax (`PhantomConfig.body_grain`): the phantom's closest look to ACDC
ACDC_LIKE = dict(ACDC_ACQUISITION, body_grain=0.15)


def report(data_root: str | Path, n: int = 40, seed: int = 0, n_acdc: int | None = None, config: dict | None = None,
           matched: bool = True, epochs: int = 8) -> dict:
    """Domain AUCs (one row per phantom and view) and image statistics of phantom vs real frames (README numbers).

    config: PhantomConfig overrides of the phantom as the cohort draws it; `matched` adds SAX rows with the phantom
    drawn at ACDC's acquisition (`ACDC_ACQUISITION`), then also with a textured thorax (`ACDC_LIKE`). The real 4CH
    cines are UK Biobank's 1.8-mm acquisition, which the cohort's draws already match, so 4CH has one row. `epochs`:
    the domain classifier's, in every fold."""
    base = dict(n_frames=20, **(config or {}))
    re = real_frames(data_root, n_acdc)
    ph = phantom_frames(n, seed, base)
    rows = [_auc_row("cohort's acquisition", "SAX", "ACDC", ph, re, seed, epochs),
            _auc_row("cohort's acquisition", "4CH", "UK Biobank", ph, re, seed, epochs)]
    for name, cfg in ({"ACDC's acquisition": ACDC_ACQUISITION, "ACDC's acquisition, textured thorax": ACDC_LIKE}
                      if matched else {}).items():
        rows.append(_auc_row(name, "SAX", "ACDC", phantom_frames(n, seed, {**base, **cfg}), re, seed, epochs))
    stats_sax = pd.concat([summarise(image_stats(re["sax"], re["sax_labels"], (MM, MM)), "ACDC SAX"),
                           summarise(image_stats(ph["sax"], ph["sax_labels"], (MM, MM)), "phantom SAX")], axis=1)
    stats_4ch = pd.concat([summarise(image_stats(re["lax"]), "UKBB-style 4CH"),
                           summarise(image_stats(ph["lax"]), "phantom 4CH")], axis=1)
    return dict(aucs=pd.DataFrame(rows), stats_sax=stats_sax, stats_4ch=stats_4ch)


def _auc_row(phantom: str, view: str, real: str, ph: dict, re: dict, seed: int, epochs: int) -> dict:
    """One domain-AUC row: phantom vs real frames of one view, each subject's frames kept in one fold."""
    key, groups = ("sax", "sax_groups") if view == "SAX" else ("lax", "lax_groups")
    return dict(phantom=phantom, view=view, real=real,
                auc=domain_auc(ph[key], re[key], seed, groups=ph[groups] + re[groups], epochs=epochs),
                frames_phantom=len(ph[key]), frames_real=len(re[key]))


if __name__ == "__main__":
    import argparse

    import torch

    ap = argparse.ArgumentParser(description="phantom realism report (README numbers)")
    ap.add_argument("--data", default=None, help="real-data root (default $CMRLIB_DATA)")
    ap.add_argument("--n", type=int, default=40, help="phantom subjects")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--probes", action="store_true", help="SAX domain AUC under each of PROBES instead")
    ap.add_argument("--matched", action="store_true", help="probes: the phantom drawn ACDC-like (`ACDC_LIKE`)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from ..utils import data_root

    if a.probes:
        cfg = dict(n_frames=20, **(ACDC_LIKE if a.matched else {}))
        print(probe_aucs(phantom_frames(a.n, a.seed, cfg), real_frames(data_root(a.data)), seed=a.seed)
              .to_markdown(index=False))
        raise SystemExit
    r = report(data_root(a.data), a.n, a.seed)
    print(r["aucs"].round(3).to_markdown(index=False))
    print(r["stats_sax"].to_markdown())
    print(r["stats_4ch"].to_markdown())
