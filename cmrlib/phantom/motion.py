"""Cardiac-cycle timing: LV filling, atrial reservoir/conduit/booster and annular motion as functions of phase.

Phase 0 is end-diastole (the R wave); phase 1 is the next one. Every curve is a C1 piecewise
smooth function of phase built from warped smoothsteps, so velocities (s', e', a') are analytic.
"""
from __future__ import annotations

import numpy as np

# physiological timing, following the Bazett-like scaling of systole with RR (Weissler 1968)
ES_MS_AT_1S = 330.0  # end-systole ~330 ms after the R wave at 60 bpm
IVR_MS = 70.0  # isovolumic relaxation


def smoothstep(x: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """C1 ramp 0->1 on [0, 1]; gamma < 1 front-loads it (fast early ejection/filling)."""
    x = np.clip(x, 0.0, 1.0) ** gamma
    return x * x * (3.0 - 2.0 * x)


def timing(hr_bpm: float, rng: np.random.Generator, e_dur_scale: float = 1.0) -> dict:
    """Sample the phase landmarks (fractions of RR) of one cycle at a heart rate."""
    rr = 60000.0 / hr_bpm
    t_es = ES_MS_AT_1S * np.sqrt(rr / 1000.0) * rng.normal(1.0, 0.05) / rr
    ivr = IVR_MS * rng.normal(1.0, 0.1) / rr
    t_a = 0.14 * rng.normal(1.0, 0.08) * min(1.0, 1000.0 / rr) ** -0.3  # atrial kick: ~140 ms
    t_a = float(np.clip(t_a, 0.08, 0.2))
    t_e = 170.0 * e_dur_scale * rng.normal(1.0, 0.08) / rr
    room = 1.0 - t_es - ivr - t_a - 0.02
    t_e = float(np.clip(t_e, 0.05, max(room, 0.05)))
    return dict(rr_ms=float(rr), t_es=float(t_es), ivr=float(ivr), t_e=t_e, t_a=t_a)


def lv_fill(phase: np.ndarray, tm: dict, e_frac: float, af: bool) -> np.ndarray:
    """LV filling fraction f (1 at ED, 0 at ES): V = ESV + SV * f."""
    p = np.mod(phase, 1.0)
    t_es, ivr, t_e, t_a = tm["t_es"], tm["ivr"], tm["t_e"], tm["t_a"]
    e_end = t_es + ivr + t_e
    a_start = 1.0 - t_a
    e_frac = 1.0 if af else e_frac
    dias = 0.0 if af else min(0.06, 1.0 - e_frac)
    f = np.where(p < t_es, 1.0 - smoothstep(p / t_es, 0.8), 0.0)
    f = np.where((p >= t_es + ivr) & (p < e_end), e_frac * smoothstep((p - t_es - ivr) / t_e, 0.7), f)
    span = max(a_start - e_end, 1e-6)
    f = np.where((p >= e_end) & (p < a_start), e_frac + dias * np.clip((p - e_end) / span, 0, 1), f)
    f = np.where(p >= a_start, e_frac + dias + (1.0 - e_frac - dias) * smoothstep((p - a_start) / t_a), f)
    return f


def atrial_fill(phase: np.ndarray, tm: dict, passive_frac: float, af: bool) -> np.ndarray:
    """Atrial volume fraction g (0 at minimum, 1 at maximum): reservoir in systole, conduit in E, booster in A."""
    p = np.mod(phase, 1.0)
    t_res = tm["t_es"] + tm["ivr"]
    e_end = t_res + tm["t_e"]
    a_start = 1.0 - tm["t_a"]
    passive = 1.0 if af else passive_frac
    g = smoothstep(p / t_res)
    g = np.where((p >= t_res) & (p < e_end), 1.0 - passive * smoothstep((p - t_res) / tm["t_e"], 0.8), g)
    g = np.where((p >= e_end) & (p < a_start), 1.0 - passive, g)
    g = np.where(p >= a_start, (1.0 - passive) * (1.0 - smoothstep((p - a_start) / tm["t_a"])), g)
    return g


def annular_velocities(tm: dict, e_frac: float, af: bool, mapse_mm: float, n: int = 4000) -> dict:
    """Peak s', e', a' (cm/s, positive magnitudes) of the mitral annulus moving as MAPSE * (1 - f)."""
    p = (np.arange(n) + 0.5) / n
    d = mapse_mm * (1.0 - lv_fill(p, tm, e_frac, af))
    v = np.gradient(d, p) / tm["rr_ms"] * 100.0  # mm per ms -> cm/s; + = toward the apex
    t_es, e0 = tm["t_es"], tm["t_es"] + tm["ivr"]
    sys = p < t_es
    ew = (p >= e0) & (p < e0 + tm["t_e"])
    aw = p >= 1.0 - tm["t_a"]
    a_peak = 0.0 if af else float(-v[aw].min())
    return dict(s_prime_cm_s=float(v[sys].max()), e_prime_cm_s=float(-v[ew].min()), a_prime_cm_s=max(a_peak, 0.0))
