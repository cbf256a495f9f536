"""Every source's label mapping, run on real masks, must give anatomy: LV ringed by MYO, RV outside the ring beside
the septum. The same masks read with a flipped convention must fail, so a mix-up can never pass silently."""
from __future__ import annotations

import numpy as np
import pytest
from io_fixtures import make_mnms, make_mnms2

from cmrlib.io import anatomy_ok, read_acdc_patient, read_mnms2_subject, read_mnms_subject
from cmrlib.io.mnms import read_info_csvs
from cmrlib.labels import LV, MYO, RV

PATIENTS = ("001", "021", "041", "061", "081", "090")  # one per ACDC group (+ the 4D patient)


def _acdc(acdc_dir, tmp_path):
    return [read_acdc_patient(acdc_dir / f"patient{p}") for p in PATIENTS]


def _mnms(acdc_dir, tmp_path):
    root = make_mnms(acdc_dir, tmp_path / "mnms")
    info = read_info_csvs(root, "External code")
    return [read_mnms_subject(d, info[d.name]) for d in sorted((root / "Training" / "Labeled").iterdir())]


def _mnms2(acdc_dir, tmp_path):
    root = make_mnms2(acdc_dir, tmp_path / "mnms2")
    info = read_info_csvs(root, "SUBJECT_CODE")
    return [c for d in sorted((root / "dataset").iterdir()) for c in read_mnms2_subject(d, info[str(int(d.name))])
            if c.view == "SAX"]


READERS = {"acdc": _acdc, "mnms": _mnms, "mnms2": _mnms2}


@pytest.fixture(scope="module")
def cines(acdc_dir, tmp_path_factory):
    """Canonical SAX cines of each source, read once per module."""
    return {s: f(acdc_dir, tmp_path_factory.mktemp(s)) for s, f in READERS.items()}


@pytest.mark.parametrize("source", sorted(READERS))
def test_mapping_gives_anatomy(source, cines):
    cines = cines[source]
    assert cines
    for c in cines:
        for t in np.flatnonzero(c.labelled):
            ok, scores = anatomy_ok(c.labels[t])
            assert ok, f"{source} {c.cine_id} frame {t}: {scores}"


SWAPS = {"LV<->RV": {LV: RV, RV: LV}, "LV<->MYO": {LV: MYO, MYO: LV}, "MYO<->RV": {MYO: RV, RV: MYO}}


@pytest.mark.parametrize("swap", sorted(SWAPS))
@pytest.mark.parametrize("source", sorted(READERS))
def test_flipped_convention_fails(source, swap, cines):
    c = cines[source][0]
    lut = np.arange(256, dtype=np.uint8)
    for a, b in SWAPS[swap].items():
        lut[a] = b
    t = int(np.flatnonzero(c.labelled)[0])
    ok, scores = anatomy_ok(lut[c.labels[t]])
    assert not ok, f"{source} with {swap} passed the anatomy check: {scores}"
