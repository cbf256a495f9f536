"""The phantom's realism measures behave as measures: a separable domain scores ~1, an identical one ~0.5."""
from __future__ import annotations

import numpy as np
import pytest

from cmrlib import labels as L
from cmrlib.phantom import realism


def blobs(n, seed, noise=0.05):
    """Bright discs on a dark field with Gaussian noise."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    out = []
    for _ in range(n):
        cy, cx = r.uniform(12, 20, 2)
        f = ((yy - cy) ** 2 + (xx - cx) ** 2 < r.uniform(20, 60)).astype(np.float32)
        f += r.normal(0, noise, f.shape)
        out.append(f.astype(np.float32))
    return out


@pytest.mark.parametrize("noise, low, high", [(0.5, 0.9, 1.0), (0.05, 0.2, 0.8)])
def test_domain_auc_separates_only_what_differs(noise, low, high):
    auc = realism.domain_auc(blobs(40, 0), blobs(40, 1, noise=noise), seed=0, folds=3, epochs=8)
    assert low <= auc <= high


def test_probe_that_hides_the_difference_drops_the_auc():
    """Domains differ only inside the disc (noise there): blanking the heart zone makes them indistinguishable."""
    def side(seed, noise):
        fr = blobs(100, seed, noise=0.02)
        labs = [(f > 0.5).astype(np.uint8) for f in fr]
        r = np.random.default_rng(seed + 10)
        fr = [f + (lab > 0) * r.normal(0, noise, f.shape).astype(np.float32) for f, lab in zip(fr, labs)]
        return dict(sax=fr, sax_labels=labs, sax_groups=[f"{seed}-{k}" for k in range(len(fr))])
    probes = {k: realism.PROBES[k] for k in ("as is", "body only (heart blanked)")}
    df = realism.probe_aucs(side(0, 0.0), side(1, 1.0), probes, seed=0, folds=3, epochs=8).set_index("probe").auc
    assert df["as is"] > 0.9 and df["body only (heart blanked)"] < 0.8


def test_image_stats_contrast_of_known_frame():
    f = np.full((40, 40), 0.3, np.float32)
    lab = np.zeros((40, 40), np.uint8)
    lab[10:30, 10:30] = L.MYO
    lab[15:25, 15:25] = L.LV
    f[lab == L.LV] = 0.9
    s = realism.image_stats([f], [lab]).iloc[0]
    assert s["contrast"] == pytest.approx((0.9 - 0.3) / (0.9 + 0.3), rel=1e-3)


def test_report_has_a_row_per_phantom_acquisition_and_view(data_dir, acdc_dir, tmp_path):
    """The realism report on four ACDC patients and the UK Biobank demo 4CH cines: the cohort's SAX and 4CH rows and
    the SAX rows at ACDC's acquisition (flat and textured thorax), each an AUC over both domains' frames (one epoch
    of the domain classifier: the rows, not their values)."""
    import os

    (tmp_path / "acdc" / "training").mkdir(parents=True)
    for p in sorted(acdc_dir.glob("patient*"))[:4]:
        os.symlink(p, tmp_path / "acdc" / "training" / p.name)
    if not (data_dir / "ukbb-demo-lax").exists():
        pytest.skip(f"ukbb-demo-lax not found under {data_dir}")
    os.symlink(data_dir / "ukbb-demo-lax", tmp_path / "ukbb-demo-lax")
    r = realism.report(tmp_path, n=4, seed=0, config={"matrix": 128}, epochs=1)
    aucs = r["aucs"]
    assert list(zip(aucs.phantom, aucs.view)) == [("cohort's acquisition", "SAX"), ("cohort's acquisition", "4CH"),
                                                  ("ACDC's acquisition", "SAX"),
                                                  ("ACDC's acquisition, textured thorax", "SAX")]
    assert aucs.auc.between(0, 1).all() and (aucs.frames_phantom > 0).all() and (aucs.frames_real > 0).all()
    assert {"ACDC SAX", "phantom SAX"} == set(r["stats_sax"].columns)
