"""The synthetic cohort: truths agree with the rendered labels, distributions are sane, runs repeat exactly."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cmrlib import labels as L
from cmrlib.phantom import PhantomConfig, make_cohort, sample_recipe, simulate_subject
from cmrlib.phantom.anatomy import Heart, sax_slice_count, truths
from cmrlib.phantom.cohort import chamber_colours
from cmrlib.phantom.signal import Textures
from cmrlib.record import LANDMARKS

TINY = dict(n_frames=8, matrix=64, pixel_mm=3.0)
FINE = PhantomConfig(n_frames=6, matrix=(200, 200), pixel_mm=1.0, sax_spacing_mm=1.5, sax_thickness_mm=1.5)
META_KEYS = ("sex age height_cm weight_kg bsa_m2 bmi sbp dbp hr_bpm hf_class mr_grade af hcm mi condition "
             "lv_edv_ml lv_esv_ml lv_sv_ml lv_ef rv_edv_ml rv_esv_ml rv_sv_ml rv_ef lv_mass_g la_max_ml la_min_ml "
             "la_ef ra_max_ml ra_min_ml ra_ef co_l_min forward_sv_ml mapse_mm s_prime_cm_s e_prime_cm_s a_prime_cm_s "
             "lv_volume_curve_ml recipe").split()


@pytest.fixture(scope="module")
def fine():
    """Two subjects rendered with thin, contiguous SAX slices (Cavalieri volumes are then accurate)."""
    return {i: simulate_subject(i, 0, FINE, views=("SAX",))["SAX"] for i in (0, 2)}


@pytest.fixture(scope="module")
def lax():
    return simulate_subject(1, 0, PhantomConfig(n_frames=12, matrix=(160, 160), pixel_mm=1.5), views=("2CH", "4CH"))


@pytest.mark.parametrize("i", [0, 2])
def test_sax_label_volumes_match_model(fine, i):
    c = fine[i]
    vox = np.prod(c.spacing) / 1000.0  # ml
    curve = np.asarray(c.meta["lv_volume_curve_ml"])
    for t in (c.ed, c.es):
        lv = (c.labels[t] == L.LV).sum() * vox
        assert lv == pytest.approx(curve[t], rel=0.03)
    assert (c.labels[c.ed] == L.MYO).sum() * vox * 1.05 == pytest.approx(c.meta["lv_mass_g"], rel=0.05)
    rv = (c.labels[c.ed] == L.RV).sum() * vox
    assert rv == pytest.approx(c.meta["rv_volume_curve_ml"][c.ed], rel=0.03)


def test_ed_es_are_model_extremes(fine):
    for c in fine.values():
        curve = np.asarray(c.meta["lv_volume_curve_ml"])
        band = 0.005 * (curve.max() - curve.min())
        assert curve[c.ed] >= curve.max() - band and curve[c.es] <= curve.min() + band
        n = len(curve)  # ED is the last frame before contraction, ES the first of the minimum plateau
        assert curve[(c.ed + 1) % n] < curve.max() - band and curve[(c.es - 1) % n] > curve.min() + band
        assert curve.max() <= c.meta["lv_edv_ml"] + 1e-3 and curve.min() >= c.meta["lv_esv_ml"] - 1e-3


def test_mitral_points_on_lv_la_boundary(lax):
    for view, c in lax.items():
        pts = c.landmarks["truth"]
        assert pts.shape == (c.n_frames, len(LANDMARKS[view]), 2)
        H, W = c.pixels.shape[1:]
        for t in range(c.n_frames):
            for x, y in pts[t]:
                r, q = int(round(y)), int(round(x))
                win = c.labels[t, max(r - 2, 0):r + 3, max(q - 2, 0):q + 3]
                assert {L.LV, L.LA} <= set(np.unique(win).tolist()), (view, t)


def test_landmark_sets_and_conventions(lax):
    c = lax["4CH"]
    assert set(c.landmarks) == {"truth", "obsA", "obsA2", "obsB"}
    err = lambda k: np.linalg.norm(c.landmarks[k] - c.landmarks["truth"], axis=-1) * c.spacing[0]
    assert err("obsA").mean() < 2.0 and err("obsA2").mean() < 2.0
    assert err("obsB").mean() > err("obsA").mean()  # convention B carries a systematic offset


def test_cine_contract():
    cines = simulate_subject(4, 1, TINY)
    assert set(cines) == {"SAX", "2CH", "4CH"}
    sax = cines["SAX"]
    assert sax.pixels.ndim == 4 and sax.pixels.dtype == np.float32 and len(sax.spacing) == 3
    assert set(np.unique(sax.labels).tolist()) <= {L.BG, L.LV, L.MYO, L.RV}
    assert {L.LA} <= set(np.unique(cines["4CH"].labels).tolist())
    for c in cines.values():
        assert c.cine_id == f"ph0005_{c.view}" and c.n_frames == 8 and c.labelled.all()
        assert np.all(np.diff(c.frame_times) > 0)
        assert not (set(META_KEYS) - set(c.meta))
        json.dumps(c.meta)
    rec = json.loads(sax.meta["recipe"])
    again = simulate_subject(rec)["SAX"]
    assert np.array_equal(again.pixels, sax.pixels) and np.array_equal(again.labels, sax.labels)



def test_a_recipe_alone_gives_its_sax_slice_count():
    """The paper-cost projection counts a cohort's SAX slices from recipes without rendering them."""
    for i in range(3):
        recipe, cine = sample_recipe(i, 1, TINY), simulate_subject(i, 1, TINY, views=("SAX",))["SAX"]
        a = recipe["acquisition"]
        assert cine.pixels.shape[1] == sax_slice_count(Heart(recipe, np.zeros(1)).L_ed, a["sax_spacing_mm"])


def test_same_seed_bit_identical():
    a, b = simulate_subject(3, 7, TINY), simulate_subject(3, 7, TINY)
    for v in a:
        assert np.array_equal(a[v].pixels, b[v].pixels) and np.array_equal(a[v].labels, b[v].labels)
    assert not np.array_equal(simulate_subject(3, 8, TINY)["4CH"].pixels, a["4CH"].pixels)


def test_frame_count_ranges():
    cfg = PhantomConfig(n_frames=(20, 30))
    n = {sample_recipe(i, 0, cfg)["acquisition"]["n_frames"] for i in range(40)}
    assert min(n) >= 20 and max(n) <= 30 and len(n) > 3
    assert PhantomConfig.make(n_frames=[20, 30]) == cfg  # a profile's YAML list is the same range
    with pytest.raises(TypeError):
        PhantomConfig.make(nframes=20)


def test_cohort_workers_resume_and_splits(tmp_path):
    s1 = make_cohort(tmp_path / "a", n=4, seed=5, workers=1, progress=False, **TINY)
    s2 = make_cohort(tmp_path / "b", n=4, seed=5, workers=2, progress=False, **TINY)
    assert s1.ids() == s2.ids() and len(s1) == 12
    for cid in s1.ids():
        assert np.array_equal(s1.read(cid).pixels, s2.read(cid).pixels)
    m = s1.manifest()
    assert set(m["split"]) == {"train", "valid", "test"} and m["lv_ef"].notna().all()
    assert s1.splits() == s2.splits()
    stamp = {cid: s1.path(cid).stat().st_mtime_ns for cid in s1.ids()}
    victim = s1.ids()[0]
    shutil.rmtree(s1.path(victim))
    make_cohort(tmp_path / "a", n=4, seed=5, workers=1, progress=False, **TINY)
    assert victim in s1
    assert all(s1.path(c).stat().st_mtime_ns == stamp[c] for c in stamp if c != victim)


def test_distributions_in_documented_ranges():
    recs = [sample_recipe(i, 0) for i in range(400)]
    df = pd.DataFrame([dict(r["covariates"], **r["conditions"], **truths(r)) for r in recs])
    healthy = df[df.condition == "healthy"]
    assert 55 <= healthy.lv_ef.mean() <= 65 and healthy.lv_ef.min() >= 45
    assert (df[df.hf_class == "HFrEF"].lv_ef < 50).all() and (df[df.hf_class == "HFpEF"].lv_ef >= 50).all()
    for sex, lo, hi in (("M", 140, 200), ("F", 100, 150)):
        assert lo <= healthy[healthy.sex == sex].lv_edv_ml.mean() <= hi
    assert 10.0 <= df.mapse_mm.mean() <= 14.5 and 5.0 <= df.e_prime_cm_s.mean() <= 9.0
    assert (df[df.af].a_prime_cm_s == 0).all() and (df[~df.af].a_prime_cm_s > 0).all()
    assert np.allclose(df.bsa_m2, np.sqrt(df.height_cm * df.weight_kg / 3600), atol=2e-3)
    assert (df.lv_sv_ml >= df.forward_sv_ml).all() and (df[df.mr_grade > 0].lv_sv_ml > df[df.mr_grade > 0].forward_sv_ml).all()
    assert 0.1 <= (df.mr_grade > 0).mean() <= 0.3 and 0.08 <= (df.hf_class == "HFrEF").mean() <= 0.2
    assert df.hr_bpm.between(50, 100).all()


def test_heart_detail_darkens_rv_pool_and_keeps_default_draws():
    """heart_detail adds its keys after the default draws (recipes and truths otherwise equal) and renders the RV
    pool darker relative to the LV pool (as in ACDC); recipes without the key keep the older RV signal."""
    kw = dict(n_frames=2, matrix=(160, 160), pixel_mm=1.5, artefacts=False)
    plain, rich = (simulate_subject(0, 0, PhantomConfig(**kw, heart_detail=d), views=("SAX",))["SAX"] for d in (0, 1))
    r0, r1 = (json.loads(c.meta["recipe"]) for c in (plain, rich))
    assert {k: v for k, v in r1["geometry"].items() if k in r0["geometry"]} == r0["geometry"]
    assert truths(r0) == truths(r1) and np.array_equal(plain.labels, rich.labels)

    def rv_over_lv(c):
        img, lab = c.pixels[c.ed], c.labels[c.ed]
        return np.median(img[lab == L.RV]) / np.percentile(img[lab == L.LV], 90)

    assert rv_over_lv(rich) < rv_over_lv(plain) - 0.05
    assert chamber_colours(dict(blood=1.0, myo=0.4), r0["geometry"])[2] == pytest.approx(0.97)


def test_texture_bank_crops_are_seeded_and_sized():
    a, b = (Textures(np.random.default_rng(1), (40, 30), 1.5, n_planes=10) for _ in range(2))
    x, y = a(4.0), b(4.0)
    assert x.shape == (1200,) and np.array_equal(x, y)
    assert not np.array_equal(a(4.0), x)  # a second request is another crop of the same field


def test_heart_failure_ef_overlap_and_measured_ef_change_nothing_else():
    clinic = dict(p_hfref=0.4, p_hfpef=0.4, hfref_ef=(38.0, 10.0, 15.0, 60.0), hfpef_ef=(56.0, 7.0, 40.0, 75.0),
                  ef_measurement_sd=4.0)
    base = [sample_recipe(i, 11, dict(p_hfref=0.4, p_hfpef=0.4)) for i in range(300)]
    wide = [sample_recipe(i, 11, clinic) for i in range(300)]
    for a, b in zip(base, wide):  # only the heart-failure classes' EF draws differ
        assert a["conditions"] == b["conditions"] and a["covariates"] == b["covariates"]
        assert a["measured"] == b["measured"]
        if a["conditions"]["hf_class"] == "none":
            assert a["function"] == b["function"]
    ef = {k: [truths(r)["lv_ef"] for r in wide if r["conditions"]["hf_class"] == k] for k in ("HFrEF", "HFpEF")}
    assert max(ef["HFrEF"]) > 50 and min(ef["HFpEF"]) < 50  # the classes reach across the threshold
    assert max(truths(r)["lv_ef"] for r in base if r["conditions"]["hf_class"] == "HFrEF") <= 45.5
    err = [truths(r)["lv_ef_measured"] - truths(r)["lv_ef"] for r in wide]
    assert abs(np.std(err) - 4.0) < 0.6 and abs(np.mean(err)) < 0.7
    old = {k: v for k, v in wide[0].items() if k != "measured"}  # a recipe stored before the measured EF existed
    assert "lv_ef_measured" not in truths(old)


def test_mr_jets_grow_with_grade_voids_are_smaller_than_mild_jets_and_only_chronic_mr_enlarges_the_atrium():
    """The per-subject MR model: about 14 % MR, mostly mild; a mild jet is short, narrow and brief, a severe one
    long, wide and holosystolic; a non-MR flow void is briefer and smaller than a mild jet; LA size (per BSA) of
    mild MR is that of subjects without MR, moderate/severe MR enlarges it."""
    recs = [sample_recipe(i, 3) for i in range(1500)]
    grade = np.array([r["conditions"]["mr_grade"] for r in recs])
    assert 0.11 <= (grade > 0).mean() <= 0.17 and (grade == 1).sum() > (grade >= 2).sum()
    jets = pd.DataFrame([dict(r["jet"], grade=g) for r, g in zip(recs, grade)])
    voids, by = jets[(jets.grade == 0) & jets.flow_void], jets[jets.grade > 0].groupby("grade")
    assert (by.length.max().diff().dropna() > 0).all() and (by.radius_mm.mean().diff().dropna() > 0).all()
    assert by.duration.mean().is_monotonic_increasing and by.duration.min()[3] >= 0.9
    mild = jets[jets.grade == 1]
    assert voids.radius_mm.max() <= mild.radius_mm.min() + 0.1 and voids.duration.max() < mild.duration.mean()
    assert ((jets.onset + jets.duration) <= 1.0 + 1e-9).all() and 0.1 < (mild.onset >= 0.4).mean() < 0.3
    assert (jets[(jets.grade == 0) & ~jets.flow_void].depth == 0).all()
    la = pd.Series([truths(r)["la_max_ml"] / r["covariates"]["bsa_m2"] for r in recs])
    plain = [(r["conditions"]["condition"] in ("healthy", "MR")) for r in recs]
    la_by = la[plain].groupby(grade[plain]).median()
    assert abs(la_by[1] - la_by[0]) < 3.0 and la_by[3] > la_by[2] > la_by[0] + 3.0


def test_the_first_mr_model_still_renders_its_recipes():
    """`mr_model=1` draws recipes without the per-subject jet, whose grade-fixed jet still renders; a model-2
    severe jet darkens the LA in systole where the same subject without MR stays bright."""
    first = sample_recipe(0, 3, dict(mr_model=1))
    assert "model" not in first["jet"] and sample_recipe(0, 3)["jet"]["model"] == 2
    severe = next(r for r in (sample_recipe(i, 3) for i in range(200)) if r["conditions"]["mr_grade"] == 3)
    clear = json.loads(json.dumps(severe))
    clear["jet"].update(length=0.0, radius_mm=0.0, depth=0.0)
    kw = PhantomConfig(n_frames=12, matrix=(128, 128), pixel_mm=1.8, artefacts=False)
    c_mr, c_no = (simulate_subject(r, 3, kw, views=("4CH",))["4CH"] for r in (severe, clear))
    la = c_no.labels == L.LA
    systole = np.r_[[np.mean(c_mr.pixels[t][la[t]]) < np.mean(c_no.pixels[t][la[t]]) - 1e-3 for t in range(12)]]
    assert systole.any() and not systole.all()  # a systolic void, gone in diastole
    for legacy in (first, dict(first, jet=dict(first["jet"], flow_void=True))):
        simulate_subject(legacy, 3, kw, views=("4CH",))  # renders without the model-2 keys


def test_body_grain_textures_the_thorax_only_and_leaves_older_cohorts_as_they_were():
    """`body_grain` roughens the tissues round the heart, not the heart's labels; at its default the recipe and the
    recorded config are those of cohorts made before the knob existed (their stores keep their identity)."""
    cfg = dict(n_frames=4, matrix=96, pixel_mm=2.0)
    assert "body_grain" not in PhantomConfig.make(cfg).record()
    assert "body_grain" not in sample_recipe(0, 0, PhantomConfig.make(cfg))["acquisition"]
    assert PhantomConfig.make(cfg, body_grain=0.15).record()["body_grain"] == 0.15
    flat = simulate_subject(0, 0, PhantomConfig.make(cfg), views=("4CH",))["4CH"]
    grain = simulate_subject(0, 0, PhantomConfig.make(cfg, body_grain=0.15), views=("4CH",))["4CH"]
    assert np.array_equal(flat.labels, grain.labels)
    diff = np.abs(grain.pixels - flat.pixels)
    lv, body = flat.labels == L.LV, flat.pixels > 0.2  # bright tissue outside the heart: fat, liver, muscle
    body &= flat.labels == 0
    assert diff[body].mean() > 2 * diff[lv].mean()  # the blood pool differs by its noise draw only (measured 2.35)
