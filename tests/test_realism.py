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
