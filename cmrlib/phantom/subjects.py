"""Subject recipes: covariates, conditions, cardiac truths, geometry and acquisition, sampled from documented distributions.

A recipe is a flat-ish JSON-serialisable dict; `cohort.simulate_subject(recipe)` regenerates the cine
from it exactly. The distributions and their sources are documented in `README.md`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from . import motion
from .signal import SPREAD

UKBB_FRAMES = 50  # frames per cine when PhantomConfig.n_frames is None: UK Biobank's cine
CONDITIONS = ("healthy", "HFrEF", "HFpEF", "MR", "MI", "AF", "HCM")
# MR grade -> (LV EDV, LA max) enlargement factor above 1 (x U(0.7, 1.3)) in the per-subject MR model
MR_REMODELLING = {1: (0.0, 0.0), 2: (0.1, 0.2), 3: (0.25, 0.45)}
# the per-subject jet (MR model 2): uniform ranges of length (fraction of LA height), radius (mm), darkening, and
# onset and duration (fractions of systole). On bSSFP a jet shows as a dephasing void wider than the Doppler vena
# contracta; the sizes make severe MR plain and mild MR hard (a supervised ResNet-18 on 346 training cines, 41 with
# MR, scores ROC-AUC 0.58-0.79 over three training seeds and two thread counts: bench/screen_mr_phantom.py, numbers
# in the README).
# Grade 0 is the brief, smaller valve-closure flow void of some non-MR atria (trace regurgitation).
JET_RANGES = {
    0: dict(length=(0.1, 0.3), radius_mm=(2.5, 4.5), depth=(0.4, 0.6), onset=(0.0, 0.12), duration=(0.1, 0.25)),
    1: dict(length=(0.3, 0.5), radius_mm=(5.0, 7.0), depth=(0.55, 0.75), onset=(0.0, 0.1), duration=(0.35, 0.65)),
    2: dict(length=(0.45, 0.7), radius_mm=(7.0, 10.0), depth=(0.65, 0.8), onset=(0.0, 0.1), duration=(0.6, 0.95)),
    3: dict(length=(0.65, 0.9), radius_mm=(10.0, 13.5), depth=(0.75, 0.9), onset=(0.0, 0.05), duration=(0.9, 1.0)),
}
LATE_SYSTOLIC = 0.2  # share of mild jets that are late-systolic (prolapse), starting at 40-60 % of systole


LATER_KNOBS = ("body_grain",)  # PhantomConfig fields recorded only when set (`PhantomConfig.record`)


@dataclass
class PhantomConfig:
    """Cohort-level knobs: acquisition geometry, image quality and condition prevalences."""

    n_frames: int | tuple[int, int] | None = None  # None: UK-Biobank-like 50; int; or (low, high) sampled per subject
    pixel_mm: float | tuple[float, float] = 1.8  # in-plane spacing (mm); a (low, high) range is sampled per subject
    matrix: int | tuple[int, int] = (208, 208)  # (H, W) of every view; FOV = matrix * pixel_mm
    sax_spacing_mm: float = 10.0
    sax_thickness_mm: float = 8.0
    lax_thickness_mm: float = 6.0
    n_slices: int | None = None  # None: cover base to apex (8-12 at 10 mm), else a fixed count
    snr: tuple[float, float] = (22.0, 60.0)  # blood-pool mean / noise sigma
    kspace: tuple[float, float] = (0.36, 0.62)  # acquired fraction of the displayed k-space (readout; sinc PSF, Gibbs)
    bias: tuple[float, float] = (0.15, 0.45)  # coil bias-field amplitude
    tissue_spread: float = SPREAD  # per-subject log-SD of each tissue's signal relative to blood (contrast variety)
    heart_detail: bool = False  # RV pool darker than the LV, wall-anchored papillary muscles, trabecular fingers
    body_grain: float = 0.0  # tissue texture of the thorax (SD of two multiplicative fields, 4 mm and 1 mm); 0: flat
    p_hfref: float = 0.14
    p_hfpef: float = 0.14
    # LVEF (%) of each heart-failure class: mean, SD, low, high of a truncated normal. The defaults keep the classes
    # apart (no HF patient near 50 %); wider ranges that cross 50 % make them overlap as a clinic's do.
    hfref_ef: tuple[float, float, float, float] = (32.0, 7.0, 15.0, 45.0)
    hfpef_ef: tuple[float, float, float, float] = (60.0, 5.0, 50.0, 72.0)
    ef_measurement_sd: float = 4.0  # SD (EF points) of the clinically measured LVEF around the truth (`lv_ef_measured`)
    p_mr: tuple[float, float, float] = (0.09, 0.035, 0.015)  # MR grade 1 (mild), 2 (moderate), 3 (severe): 14 %
    mr_model: int = 2  # 2: jets sized and timed per subject by grade, flow voids like mild jets, LA enlarged only by
                       # moderate/severe MR; 1: the first model (one jet shape per grade; cohorts made before it)
    p_af: float = 0.08
    p_hcm: float = 0.05
    p_mi: float = 0.08
    p_flow_void: float = 0.3  # non-MR subjects with a small brief valve flow void
    p_not_ed: float = 0.3  # cine does not start at ED
    p_random_start: float = 0.25  # ... and of those, starts anywhere (retrospective gating)
    p_misregistration: float = 0.4  # SAX stack with breath-hold slice shifts
    planning_error_deg: float = 4.0  # SD of plane obliquity
    trigger_jitter_ms: float = 4.0
    artefacts: bool = True  # False: no misregistration, no planning error, no jitter (clean geometry for tests)

    def record(self) -> dict:
        """The config as JSON-ready values; a knob added after the first cohorts is left out at its default, so a
        store made before it keeps its identity."""
        later = {f.name: f.default for f in fields(self) if f.name in LATER_KNOBS}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()
                if not (k in later and v == later[k])}

    @classmethod
    def make(cls, config: "PhantomConfig | dict | None" = None, **overrides) -> "PhantomConfig":
        """Config from None, a dict or a config, with keyword overrides; unknown keys raise. A list (YAML and
        papermill give ranges and prevalences as lists) becomes the tuple the field declares."""
        base = asdict(config) if isinstance(config, PhantomConfig) else dict(config or {})
        base.update(overrides)
        base = {k: tuple(v) if isinstance(v, list) else v for k, v in base.items()}
        known = {f.name for f in fields(cls)}
        bad = sorted(set(base) - known)
        if bad:
            raise TypeError(f"unknown PhantomConfig keys {bad}; known: {sorted(known)}")
        return cls(**base)


def _draw(rng, spec):
    """A value from a fixed number or a (low, high) range."""
    if isinstance(spec, (tuple, list)):
        lo, hi = spec
        return rng.uniform(lo, hi) if isinstance(lo, float) or isinstance(hi, float) else int(rng.integers(lo, hi + 1))
    return spec


def _tn(rng, mean, sd, lo, hi):
    """Truncated normal by clipping redraws (deterministic given the rng)."""
    for _ in range(20):
        v = rng.normal(mean, sd)
        if lo <= v <= hi:
            return float(v)
    return float(np.clip(mean, lo, hi))


def sample_conditions(rng: np.random.Generator, cfg: PhantomConfig) -> dict:
    """Condition flags with the configured prevalences (HCM excludes HF; AF twice as common in HFpEF)."""
    hcm = bool(rng.random() < cfg.p_hcm)
    u = rng.random()
    hf = "none" if hcm else ("HFrEF" if u < cfg.p_hfref else "HFpEF" if u < cfg.p_hfref + cfg.p_hfpef else "none")
    p_mr = np.asarray(cfg.p_mr, dtype=float)
    mr = int(np.searchsorted(np.cumsum(p_mr), rng.random(), side="right") + 1)
    mr = 0 if mr > len(p_mr) else mr
    af = bool(rng.random() < min(1.0, cfg.p_af * (2.0 if hf == "HFpEF" else 1.0)))
    mi = bool((not hcm) and rng.random() < cfg.p_mi)
    cond = ("HCM" if hcm else hf if hf != "none" else "MR" if mr > 0 else "MI" if mi else "AF" if af else "healthy")
    return dict(hf_class=hf, mr_grade=mr, af=af, hcm=hcm, mi=mi, condition=cond)


def sample_covariates(rng: np.random.Generator, cond: dict) -> dict:
    """Sex, age, height, weight, BSA (Mosteller), BMI, blood pressure and heart rate (UK Biobank imaging-like)."""
    p_f = 0.6 if cond["hf_class"] == "HFpEF" else 0.35 if cond["hf_class"] == "HFrEF" or cond["mi"] else 0.5
    sex = "F" if rng.random() < p_f else "M"
    age_shift = 6.0 if cond["condition"] != "healthy" else 0.0
    age = _tn(rng, 63.0 + age_shift, 7.5, 45.0, 82.0)
    height = _tn(rng, 163.0 if sex == "F" else 176.5, 6.3 if sex == "F" else 6.8, 145.0, 200.0)
    bmi = float(np.clip(np.exp(rng.normal(np.log(26.5 if sex == "F" else 27.2), 0.15)), 17.0, 45.0))
    weight = bmi * (height / 100.0) ** 2
    bsa = float(np.sqrt(height * weight / 3600.0))
    sbp = _tn(rng, 118.0 + 0.35 * age + (12.0 if cond["hf_class"] == "HFpEF" or cond["hcm"] else 0.0), 17.0, 90.0, 210.0)
    dbp = _tn(rng, 0.42 * sbp + 22.0, 8.0, 50.0, 120.0)
    hr = _tn(rng, 64.0 + (12.0 if cond["af"] else 0.0) + (6.0 if cond["hf_class"] == "HFrEF" else 0.0), 9.0, 50.0, 100.0)
    return dict(sex=sex, age=round(age, 1), height_cm=round(height, 1), weight_kg=round(weight, 1),
                bsa_m2=round(bsa, 3), bmi=round(bmi, 2), sbp=round(sbp), dbp=round(dbp), hr_bpm=round(hr, 1))


def sample_function(rng: np.random.Generator, cov: dict, cond: dict, cfg: PhantomConfig | None = None) -> dict:
    """Chamber volumes, EF, mass, atrial function and annular motion for one subject (sex, age, BSA, conditions)."""
    cfg = cfg or PhantomConfig()
    male, bsa, age = cov["sex"] == "M", cov["bsa_m2"], cov["age"]
    # healthy UK Biobank reference (Petersen 2017): indexed volumes, EF and mass
    edvi = _tn(rng, (84.0 if male else 74.0) - 0.25 * (age - 60.0), 11.0 if male else 9.5, 50.0, 125.0)
    ef = _tn(rng, 58.0 if male else 61.0, 5.0, 48.0, 72.0)
    massi = _tn(rng, 53.0 if male else 42.0, 8.0 if male else 6.5, 30.0, 80.0)
    rv_ratio = _tn(rng, 1.09 if male else 1.05, 0.07, 0.9, 1.3)  # RVEDV / LVEDV
    la_maxi = _tn(rng, 36.0, 8.0, 20.0, 60.0)
    laef = _tn(rng, 60.0, 6.0, 45.0, 75.0)
    ra_maxi = _tn(rng, 42.0 if male else 38.0, 10.0, 22.0, 70.0)
    raef = _tn(rng, 46.0, 7.0, 30.0, 65.0)
    mapse = _tn(rng, 14.5 - 0.06 * (age - 60.0), 2.0, 9.0, 20.0)
    tapse = _tn(rng, 22.0, 3.5, 14.0, 30.0)
    e_frac = float(np.clip(rng.normal(0.88 - 0.004 * age, 0.06), 0.4, 0.85))
    passive = float(np.clip(rng.normal(0.95 - 0.006 * age, 0.06), 0.3, 0.75))
    e_dur, sphericity, wall_pattern = 1.0, _tn(rng, 0.3, 0.02, 0.25, 0.36), "normal"
    if cond["hf_class"] == "HFrEF":
        edvi *= rng.uniform(1.35, 1.9)
        ef = _tn(rng, *cfg.hfref_ef)
        massi *= rng.uniform(1.1, 1.4)
        la_maxi *= rng.uniform(1.3, 1.8); laef = _tn(rng, 35.0, 9.0, 15.0, 55.0)
        mapse = _tn(rng, 7.0, 1.8, 3.0, 11.0); tapse *= 0.75
        sphericity += rng.uniform(0.04, 0.1); e_frac = float(np.clip(e_frac + 0.1, 0.5, 0.9))
        rv_ratio *= rng.uniform(0.8, 1.0)
    elif cond["hf_class"] == "HFpEF":
        edvi *= rng.uniform(0.85, 1.05)
        ef = _tn(rng, *cfg.hfpef_ef)
        massi *= rng.uniform(1.2, 1.55)
        la_maxi *= rng.uniform(1.3, 1.7); laef = _tn(rng, 42.0, 8.0, 20.0, 60.0)
        mapse = _tn(rng, 10.0, 1.8, 5.0, 14.0)
        e_frac, e_dur = float(np.clip(rng.normal(0.42, 0.06), 0.3, 0.55)), 1.4
    if cond["hcm"]:
        edvi *= rng.uniform(0.75, 0.95); ef = _tn(rng, 70.0, 5.0, 60.0, 82.0)
        massi *= rng.uniform(1.6, 2.3); la_maxi *= rng.uniform(1.3, 1.7); laef = _tn(rng, 45.0, 8.0, 25.0, 60.0)
        mapse = _tn(rng, 9.0, 1.8, 5.0, 13.0); e_frac, e_dur = float(np.clip(rng.normal(0.45, 0.06), 0.3, 0.6)), 1.3
        wall_pattern = "septal_hypertrophy"
    if cond["mi"]:
        edvi *= rng.uniform(1.0, 1.25)
        if cond["hf_class"] == "none":
            ef = min(ef, _tn(rng, 43.0, 7.0, 28.0, 56.0))
        mapse = min(mapse, _tn(rng, 10.5, 2.0, 5.0, 15.0))
        wall_pattern = "infarct"
    rf = 0.0
    if cond["mr_grade"] > 0:
        g = cond["mr_grade"]
        rf = float(rng.uniform(*{1: (0.08, 0.22), 2: (0.28, 0.45), 3: (0.5, 0.65)}[g]))
        if cfg.mr_model == 1:
            edvi *= 1.0 + 0.1 * g * rng.uniform(0.7, 1.3)
            la_maxi *= 1.0 + 0.22 * g * rng.uniform(0.7, 1.3)
        else:  # volume overload remodels the LV and LA only in chronic moderate or severe MR
            edvi *= 1.0 + MR_REMODELLING[g][0] * rng.uniform(0.7, 1.3)
            la_maxi *= 1.0 + MR_REMODELLING[g][1] * rng.uniform(0.7, 1.3)
        if cond["hf_class"] == "none" and not cond["mi"] and (cfg.mr_model == 1 or g >= 2):
            ef = max(ef, _tn(rng, 62.0, 5.0, 52.0, 75.0))
    if cond["af"]:
        la_maxi *= rng.uniform(1.25, 1.6); laef = _tn(rng, 24.0, 7.0, 8.0, 40.0); raef = _tn(rng, 22.0, 7.0, 8.0, 40.0)
        ra_maxi *= rng.uniform(1.2, 1.5); e_frac = 1.0
        e_dur *= 1.3; mapse *= rng.uniform(0.75, 0.95)
    edv = edvi * bsa
    esv = edv * (1.0 - ef / 100.0)
    sv = edv - esv
    fsv = sv * (1.0 - rf)
    rv_edv = rv_ratio * edv if rf == 0 else max(rv_ratio * (edv / (1 + 0.1 * cond["mr_grade"])), fsv / 0.7)
    rv_esv = max(rv_edv - fsv, 0.25 * rv_edv)
    rv_edv = rv_esv + fsv  # RV stroke volume = forward LV stroke volume (no shunt, no TR)
    la_max = la_maxi * bsa
    la_min = la_max * (1.0 - laef / 100.0)
    ra_max = ra_maxi * bsa
    return dict(
        lv_edv_ml=edv, lv_esv_ml=esv, lv_mass_g=massi * bsa, regurgitant_fraction=rf,
        rv_edv_ml=rv_edv, rv_esv_ml=rv_esv, la_max_ml=la_max, la_min_ml=la_min,
        ra_max_ml=ra_max, ra_min_ml=ra_max * (1.0 - raef / 100.0), mapse_mm=mapse, tapse_mm=tapse,
        e_frac=e_frac, passive_frac=passive, e_dur_scale=e_dur, sphericity=sphericity, wall_pattern=wall_pattern)


def sample_geometry(rng: np.random.Generator, cov: dict, cond: dict, fn: dict) -> dict:
    """Heart orientation in the chest, shape factors, regional wall pattern, RV/atrial placement and body habitus."""
    male = cov["sex"] == "M"
    g = dict(
        az_deg=_tn(rng, 55.0, 8.0, 35.0, 75.0),  # long axis angle left of sagittal in the axial plane
        el_deg=_tn(rng, 25.0, 7.0, 8.0, 42.0),  # apex below the axial plane
        roll_deg=rng.normal(0.0, 10.0),  # RV direction about the long axis
        beta=_tn(rng, 0.7, 0.05, 0.55, 0.8),  # basal taper: equator below the base, in long semi-axes
        apex_wall_frac=_tn(rng, 0.75, 0.08, 0.55, 0.95),
        rv_offset=_tn(rng, 1.0, 0.06, 0.85, 1.15),  # RV centre distance / LV epicardial radius
        rv_aspect=_tn(rng, 0.62, 0.06, 0.5, 0.8),  # RV cross-section: radial / tangential semi-axis
        rv_angle_deg=rng.normal(-15.0, 8.0),  # RV centre rotated toward anterior
        rv_apex_frac=_tn(rng, 0.85, 0.04, 0.72, 0.95),
        rv_beta=_tn(rng, 0.3, 0.06, 0.15, 0.45), rv_wall_mm=_tn(rng, 3.5, 0.5, 2.5, 5.0),
        tv_drop_mm=_tn(rng, 7.0, 2.0, 3.0, 12.0),
        la_shape=[_tn(rng, 1.0, 0.06, 0.85, 1.15), _tn(rng, 0.9, 0.06, 0.75, 1.05), _tn(rng, 1.1, 0.08, 0.9, 1.3)],
        ra_shape=[_tn(rng, 1.0, 0.06, 0.85, 1.15), _tn(rng, 0.9, 0.06, 0.75, 1.05), _tn(rng, 1.15, 0.08, 0.9, 1.35)],
        la_kappa=_tn(rng, 0.35, 0.08, 0.15, 0.55), atrial_wall_mm=_tn(rng, 2.2, 0.3, 1.5, 3.0),
        la_offset_mm=[rng.normal(-6.0, 3.0), rng.normal(0.0, 3.0)],
        ra_dist=_tn(rng, 1.2, 0.08, 1.0, 1.45),  # RA centre distance / RV centre distance
        heart_pos_mm=[rng.normal(8.0, 6.0), rng.normal(2.0, 7.0)],  # mitral-plane centre, LPS x/y (mm)
        wall_pattern=fn["wall_pattern"], wall_sector_deg=0.0, wall_sector_width_deg=0.0, scar_mm=0.0,
        hyper_gain=0.0, territory="none",
        papillary_deg=[float(rng.normal(140.0, 12.0)), float(rng.normal(235.0, 12.0))],  # from the septum (+x)
        papillary_mm=_tn(rng, 5.5, 1.0, 3.5, 8.0), trabeculation=_tn(rng, 0.6, 0.12, 0.3, 0.85),
        flow_amp=_tn(rng, 0.18, 0.05, 0.06, 0.3), flow_phase=[float(rng.uniform(0, 6.3)), float(rng.uniform(0, 6.3))],
    )
    if fn["wall_pattern"] == "infarct":
        territory = rng.choice(["LAD", "RCA", "LCx"], p=[0.5, 0.3, 0.2])
        g.update(wall_sector_deg=float(rng.normal(0, 15)),
                 wall_sector_width_deg=_tn(rng, 70.0, 15.0, 40.0, 110.0), scar_mm=_tn(rng, 4.0, 0.8, 2.5, 6.0),
                 territory=str(territory))
    elif fn["wall_pattern"] == "septal_hypertrophy":
        g.update(territory="septum", wall_sector_deg=float(rng.normal(0.0, 15.0)), wall_sector_width_deg=_tn(rng, 90.0, 20.0, 50.0, 140.0),
                 hyper_gain=_tn(rng, 0.9, 0.3, 0.4, 1.6))
    fat = float(np.clip((cov["bmi"] - 18.0) * (0.9 if male else 1.3), 4.0, 40.0))
    g["body"] = dict(
        half_width_mm=_tn(rng, 168.0 if male else 155.0, 10.0, 130.0, 200.0) + 1.5 * (cov["bmi"] - 26.0),
        half_depth_mm=_tn(rng, 112.0 if male else 102.0, 8.0, 85.0, 145.0) + 1.2 * (cov["bmi"] - 26.0),
        fat_mm=fat, muscle_mm=_tn(rng, 20.0 if male else 15.0, 3.0, 8.0, 28.0),
        diaphragm_mm=_tn(rng, -55.0, 12.0, -90.0, -25.0), spine_y_mm=_tn(rng, 75.0, 8.0, 55.0, 100.0),
        aorta_mm=[rng.normal(22.0, 5.0), rng.normal(48.0, 6.0)], aorta_r_mm=_tn(rng, 12.0, 1.5, 9.0, 16.0))
    return g


def sample_acquisition(rng: np.random.Generator, cfg: PhantomConfig) -> dict:
    """Frames, spacing, matrix, planning error, start phase, jitter, misregistration and image quality."""
    n_frames = UKBB_FRAMES if cfg.n_frames is None else int(_draw(rng, tuple(cfg.n_frames)) if isinstance(cfg.n_frames, (tuple, list)) else cfg.n_frames)
    px = float(_draw(rng, tuple(cfg.pixel_mm)) if isinstance(cfg.pixel_mm, (tuple, list)) else cfg.pixel_mm)
    matrix = (int(cfg.matrix), int(cfg.matrix)) if np.isscalar(cfg.matrix) else tuple(int(m) for m in cfg.matrix)
    art = cfg.artefacts
    pe = cfg.planning_error_deg if art else 0.0
    start = 0.0
    if art and rng.random() < cfg.p_not_ed:
        start = float(rng.random()) if rng.random() < cfg.p_random_start else float(rng.integers(1, 4)) / n_frames
    misreg = bool(art and rng.random() < cfg.p_misregistration)
    return dict(
        n_frames=n_frames, pixel_mm=px, matrix=list(matrix), sax_spacing_mm=cfg.sax_spacing_mm,
        sax_thickness_mm=cfg.sax_thickness_mm, lax_thickness_mm=cfg.lax_thickness_mm, n_slices=cfg.n_slices,
        start_phase=start, trigger_jitter_ms=cfg.trigger_jitter_ms if art else 0.0,
        sax_tilt_deg=[rng.normal(0, pe), rng.normal(0, pe)],
        lax_rot_deg={"4CH": rng.normal(0, 1.5 * pe), "2CH": rng.normal(0, 1.5 * pe), "3CH": rng.normal(0, 1.5 * pe)},
        lax_tilt_deg={"4CH": rng.normal(0, pe), "2CH": rng.normal(0, pe), "3CH": rng.normal(0, pe)},
        lax_offset_mm={v: float(rng.normal(0, 2.0 if art else 0.0)) for v in ("4CH", "2CH", "3CH")},
        inplane_deg={v: float(rng.normal(0, 8.0 if art else 0.0)) for v in ("SAX", "4CH", "2CH", "3CH")},
        fov_shift_mm={v: [float(rng.normal(0, 10.0 if art else 0.0)), float(rng.normal(0, 10.0 if art else 0.0))]
                      for v in ("SAX", "4CH", "2CH", "3CH")},
        sax_misreg_mm=float(rng.uniform(1.0, 3.5)) if misreg else 0.0,
        snr=float(rng.uniform(*cfg.snr)), kspace=float(rng.uniform(*cfg.kspace)), bias=float(rng.uniform(*cfg.bias)),
        pe_ratio=float(rng.uniform(0.75, 0.95)), ghost=float(rng.uniform(0.0, 0.05)), tissue_spread=cfg.tissue_spread,
        **({"body_grain": cfg.body_grain} if cfg.body_grain else {}),
    )


def sample_texture(rng: np.random.Generator, cov: dict, detail: bool = False) -> tuple[dict, dict]:
    """Image-realism parameters added after the first cohorts (own random stream, so older draws are unchanged):
    body (breasts, ribs, diaphragm lift under the heart, stomach air, pulmonary trunk, epicardial fat cover) and
    blood-pool texture (papillary muscle position/size, slow apical flow, fine flow pattern); with `detail` also
    the RV pool signal, wall-anchored papillary muscles and trabecular fingers (`PhantomConfig.heart_detail`)."""
    female = cov["sex"] == "F"
    body = dict(breast_mm=_tn(rng, 32.0, 10.0, 12.0, 60.0) if female else 0.0, breast_z_mm=rng.normal(-40.0, 15.0),
                rib_pitch_mm=_tn(rng, 30.0, 3.0, 24.0, 36.0), rib_mm=_tn(rng, 11.0, 1.5, 8.0, 14.0),
                rib_phase_mm=float(rng.uniform(0.0, 30.0)), dome_lift_mm=_tn(rng, 25.0, 8.0, 5.0, 45.0),
                stomach_air_mm=_tn(rng, 15.0, 8.0, 0.0, 35.0), pa_r_mm=_tn(rng, 13.0, 1.5, 10.0, 17.0),
                epi_fat_thr=rng.normal(0.0, 0.3))
    heart = dict(papillary_pos=float(rng.uniform(0.6, 0.72)), papillary_scale=_tn(rng, 1.3, 0.15, 1.0, 1.7),
                 slow_flow=_tn(rng, 0.4, 0.1, 0.1, 0.65), flow_fine=_tn(rng, 0.2, 0.05, 0.05, 0.32))
    if detail:  # drawn last, so the draws above are the same either way
        heart.update(rv_signal=_tn(rng, 0.55, 0.12, 0.3, 0.85), papillary_gap=float(rng.uniform(0.2, 0.9)),
                     trabecular_mm=_tn(rng, 8.0, 2.0, 4.0, 13.0))
    return body, heart


def sample_jet(rng: np.random.Generator, grade: int, flow_void: bool) -> dict:
    """One subject's jet: MR of grade 1-3 or, in a non-MR subject with a flow void, a brief closure void (as trace
    regurgitation shows on bSSFP); none otherwise. Mild jets are the smallest and briefest, early- or late-systolic;
    severe jets long, wide and holosystolic (ranges in `JET_RANGES`)."""
    if grade == 0 and not flow_void:
        return dict(model=2, length=0.0, radius_mm=0.0, depth=0.0, onset=0.0, duration=0.0)
    r = JET_RANGES[grade]
    out = dict(model=2, **{k: float(rng.uniform(*r[k])) for k in ("length", "radius_mm", "depth", "onset", "duration")})
    if grade == 1 and rng.random() < LATE_SYSTOLIC:
        out["onset"] = float(rng.uniform(0.4, 0.6))
    out["duration"] = min(out["duration"], 1.0 - out["onset"])
    return out


def sample_recipe(index: int, seed: int, config: PhantomConfig | dict | None = None) -> dict:
    """The full parameter dict of subject `index` in the cohort of `seed` (independent of worker layout)."""
    cfg = PhantomConfig.make(config)
    rng = np.random.default_rng([int(seed), int(index), 3])
    cond = sample_conditions(rng, cfg)
    cov = sample_covariates(rng, cond)
    fn = sample_function(rng, cov, cond, cfg)
    tm = motion.timing(cov["hr_bpm"], rng, fn["e_dur_scale"])
    geo = sample_geometry(rng, cov, cond, fn)
    acq = sample_acquisition(rng, cfg)
    jet = dict(
        direction_deg=[float(rng.normal(0, 12 + 10 * cond["mr_grade"])), float(rng.uniform(0, 360))],
        flow_void=bool(cond["mr_grade"] == 0 and rng.random() < cfg.p_flow_void),
        void_phase=float(rng.uniform(0.05, 0.3)))
    noise_seed = int(rng.integers(0, 2**31 - 1))
    if cfg.mr_model >= 2:  # its own stream: the draws above are those of the first model
        jet.update(sample_jet(np.random.default_rng([int(seed), int(index), 6]), cond["mr_grade"], jet["flow_void"]))
    body, heart = sample_texture(np.random.default_rng([int(seed), int(index), 4]), cov, cfg.heart_detail)
    # a clinic's LVEF reading: the truth plus measurement error, from its own stream (earlier draws unchanged)
    error = np.random.default_rng([int(seed), int(index), 5]).normal(0, cfg.ef_measurement_sd)
    measured = dict(lv_ef_error=float(error))
    geo["body"].update(body)
    geo.update(heart)
    return dict(subject=f"ph{index + 1:04d}", index=int(index), seed=int(seed), covariates=cov, conditions=cond,
                function=fn, timing=tm, geometry=geo, acquisition=acq, jet=jet, noise_seed=noise_seed,
                measured=measured)
