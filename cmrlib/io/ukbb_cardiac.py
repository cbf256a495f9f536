"""A subject folder in the layout of the ukbb_cardiac pipeline (Bai et al., JCMR 2018): long-axis cines
`la_2ch` / `la_3ch` / `la_4ch` beside the network's segmentations `seg4_la_4ch` (LV, MYO, RV, LA, RA at every
frame) and `seg_la_2ch` (LA). Those labels are a network's output: each cine records them as pseudo-labels
(`meta['label_source']` names the convention, `meta['labels_are']` says "pseudo"), never as ground truth.

The same cines read with the NIfTI source and a sidecar per file (`{"view": "4CH", "labels":
"seg4_la_4ch.nii.gz", "label_source": "ukbb_la_4ch"}`); this reader gives those arguments itself, for folders
that cannot be written to (the pipeline's output, a shared read-only copy)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..record import Cine
from ..utils import data_root
from .common import canonical, gt_truths, keyframe_cine, load_nifti, sax_spacing, to_rows_cols, zooms
from .errors import IngestError
from .nifti import read_nifti_cine

# view -> (cine file, its segmentation, the segmentation's label convention in `labels.SOURCE_MAPS`)
LAYOUT = {"2CH": ("la_2ch", "seg_la_2ch", "ukbb_la_2ch"),
          "3CH": ("la_3ch", None, None),
          "4CH": ("la_4ch", "seg4_la_4ch", "ukbb_la_4ch")}


def read_subject(folder: str | Path, subject: str, views: tuple[str, ...] = tuple(LAYOUT)) -> list[Cine]:
    """The long-axis cines of `views` in one subject folder, each with its pseudo-labels where the pipeline made
    them; `subject` is the pseudonym the cines carry (never the folder's name, which may be an EID)."""
    folder, out = Path(folder), []
    for view, (name, seg, source) in LAYOUT.items():
        cine_path = folder / f"{name}.nii.gz"
        if view not in views or not cine_path.exists():
            continue
        seg_path = folder / f"{seg}.nii.gz" if seg else None
        has_seg = seg_path is not None and seg_path.exists()
        cine = read_nifti_cine(cine_path, view, subject=subject, labels=seg_path.name if has_seg else None,
                               label_source=source if has_seg else None, source="ukbb_cardiac")
        if has_seg:
            cine.meta["labels_are"] = "pseudo"
        out.append(cine)
    if not out:
        names = ", ".join(LAYOUT[v][0] + ".nii.gz" for v in views)
        raise IngestError(folder, f"no long-axis cine ({names})")
    return out


def sax_measures(folder: str | Path) -> dict:
    """LV and RV volumes, EFs and LV mass from the pipeline's SAX segmentation at ED and ES (`seg_sa_ED`,
    `seg_sa_ES`; slice summation), measures of pseudo-labels; {} when the folder has none."""
    paths = [Path(folder) / f"seg_sa_{k}.nii.gz" for k in ("ED", "ES")]
    if not all(p.exists() for p in paths):
        return {}
    masks = []
    for p in paths:
        arr, img = load_nifti(p, 3)
        masks.append(canonical(to_rows_cols(arr), "ukbb_sax", p))
    return gt_truths(np.stack(masks), sax_spacing(zooms(img)), 0, 1)


def read_sax_keyframes(folder: str | Path, subject: str) -> Cine | None:
    """The SAX stacks at ED and ES (`sa_ED`, `sa_ES`) as a two-frame SAX cine with the pipeline's segmentation as
    pseudo-labels (`meta['labels_are']`); None when the folder has no such stacks."""
    folder = Path(folder)
    names = [(folder / f"sa_{k}.nii.gz", folder / f"seg_sa_{k}.nii.gz") for k in ("ED", "ES")]
    if not all(a.exists() and b.exists() for a, b in names):
        return None
    stacks, masks, img = [], {}, None
    for t, (image, seg) in enumerate(names):
        arr, img = load_nifti(image, 3)
        stacks.append(to_rows_cols(arr[..., 0] if arr.ndim == 4 else arr).astype(np.float32))
        lab, _ = load_nifti(seg, 3)
        masks[t] = canonical(to_rows_cols(lab[..., 0] if lab.ndim == 4 else lab), "ukbb_sax", seg)
    if stacks[0].shape != stacks[1].shape:
        raise IngestError(names[1][0], f"shape {stacks[1].shape} != the ED stack's {stacks[0].shape}")
    meta = dict(labels_are="pseudo", label_source="ukbb_sax")
    return keyframe_cine(names[0][0], subject, "SAX", np.stack(stacks), sax_spacing(zooms(img)),
                         np.full(2, np.nan, np.float32), 0, 1, masks, "ukbb_cardiac", meta)


def demo_folders(root: str | Path) -> dict[str, Path]:
    """Every subject folder under `root` (the UK Biobank demo: `1/`, `2/`) by its pseudonym `ukbb-demo-<k>`, in
    sorted order."""
    folders = sorted(p for p in Path(root).iterdir() if p.is_dir() and (p / "la_4ch.nii.gz").exists())
    return {f"ukbb-demo-{k + 1}": f for k, f in enumerate(folders)}


def read_demo(root: str | Path, views: tuple[str, ...] = tuple(LAYOUT)) -> dict[str, list[Cine]]:
    """Every demo subject's long-axis cines of `views`: pseudonym -> its cines."""
    return {name: read_subject(folder, name, views) for name, folder in demo_folders(root).items()}


def demo_root(data_dir: str | Path | None = None) -> Path | None:
    """`ukbb-demo/` under the real-data root (`data_dir`, else $CMRLIB_DATA); None, with the reason printed, when
    there is none (the line names no folder: a data root may hold a person's name)."""
    root = data_root(data_dir)
    if root is None or not (root / "ukbb-demo").is_dir():
        print("UK Biobank demo skipped: no ukbb-demo/ under the data root (set data_dir or $CMRLIB_DATA)")
        return None
    return root / "ukbb-demo"


def demo_cines(data_dir: str | Path | None = None, views: tuple[str, ...] = tuple(LAYOUT),
               labelled: bool = False) -> list[Cine]:
    """The demo's cines of `views` (only those with pseudo-labels when `labelled`), subject by subject; [] when the
    data root has no demo (the reason printed)."""
    demo = demo_root(data_dir)
    if demo is None:
        return []
    return [c for cs in read_demo(demo, views).values() for c in cs if not labelled or c.labels is not None]
