"""The 3D heart of one subject over the cycle: truncated-ellipsoid LV, crescent RV, cap-ellipsoid atria.

Heart frame (mm): origin at the end-diastolic mitral-plane centre, +z from apex to base, +x toward
the RV (septum), +y = z x x. Every chamber is an analytic shape whose volume has a closed form
(or a 1D integral), so the shapes are solved per frame to hit the prescribed volume curves exactly:

- LV cavity: {rho^2 / a(theta)^2 + ((z - zc)/Lp)^2 <= 1, z <= zb}; epicardium: same centre, radius b,
  long semi-axis Lp + t_apex. a(theta) = b - T0(theta) - tau * u(theta) carries regional wall patterns
  (infarct: thin, non-thickening; HCM: septal hypertrophy). Myocardial volume is conserved, so the wall
  thickens as the cavity empties; the apex is fixed and the base descends by MAPSE * (1 - filling).
- RV cavity: an ellipsoid of revolution beside the LV minus the LV epicardium, below the tricuspid plane.
- LA / RA: ellipsoids cut by the mitral / tricuspid plane (the floor moves with the annulus).
"""
from __future__ import annotations

import numpy as np

from . import motion

MYO_DENSITY = 1.05  # g/ml
N_THETA = 360
THETA = (np.arange(N_THETA) + 0.5) * 2 * np.pi / N_THETA


def kcap(beta):
    """Volume factor of an ellipsoid cut at `beta` semi-axes past its equator: V = pi a b c * kcap."""
    return 2.0 / 3.0 + beta - beta ** 3 / 3.0


def frame_axes(geo: dict) -> np.ndarray:
    """Rotation whose columns are the heart axes (x toward RV, y, z apex->base) in patient LPS coordinates."""
    az, el, roll = np.deg2rad([geo["az_deg"], geo["el_deg"], geo["roll_deg"]])
    horiz = np.array([np.sin(az), -np.cos(az), 0.0])  # left and anterior
    apex_dir = np.cos(el) * horiz + np.sin(el) * np.array([0.0, 0.0, -1.0])
    ez = -apex_dir
    r = np.array([-1.0, -0.8, 0.0])  # RV lies right and anterior of the LV
    ex = r - r.dot(ez) * ez
    ex /= np.linalg.norm(ex)
    ey = np.cross(ez, ex)
    ex, ey = np.cos(roll) * ex + np.sin(roll) * ey, -np.sin(roll) * ex + np.cos(roll) * ey
    return np.stack([ex, ey, ez], axis=1)


def anterior_angle(rot: np.ndarray) -> float:
    """Angle (rad, heart frame, from +x toward +y) of the patient's anterior direction about the long axis."""
    a = rot.T @ np.array([0.0, -1.0, 0.0])
    return float(np.arctan2(a[1], a[0]))


def wall_pattern(geo: dict, rot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-angle non-thickening wall T0 (mm) and thickening weight u for the regional pattern."""
    ant = anterior_angle(rot)
    t0 = np.zeros(N_THETA)
    u = np.ones(N_THETA)
    pat = geo["wall_pattern"]
    if pat == "normal":
        return t0, u
    centre = {"LAD": np.angle(np.exp(1j * ant) + 1.0), "RCA": ant + np.pi - 0.5, "LCx": np.pi,
              "septum": 0.0}[geo["territory"]] + np.deg2rad(geo["wall_sector_deg"])
    hw = np.deg2rad(geo["wall_sector_width_deg"]) / 2
    kappa = np.log(2.0) / (1.0 - np.cos(hw))
    w = np.exp(kappa * (np.cos(THETA - centre) - 1.0))
    if pat == "infarct":
        return geo["scar_mm"] * w, 1.0 - w
    return t0, 1.0 + geo["hyper_gain"] * w


def _bisect(fun, lo, hi, n=50):
    """Vectorised bisection for an increasing function (root of fun = 0 between lo and hi)."""
    lo, hi = np.broadcast_arrays(np.asarray(lo, float), np.asarray(hi, float))
    lo, hi = lo.copy(), hi.copy()
    for _ in range(n):
        mid = 0.5 * (lo + hi)
        pos = fun(mid) > 0
        hi = np.where(pos, mid, hi)
        lo = np.where(pos, lo, mid)
    return 0.5 * (lo + hi)


def lens_area(r1, r2, d):
    """Area of the intersection of two discs of radii r1, r2 whose centres are d apart (vectorised)."""
    r1, r2, d = np.broadcast_arrays(np.asarray(r1, float), np.asarray(r2, float), np.asarray(d, float))
    out = np.zeros(r1.shape)
    small = np.minimum(r1, r2)
    inside = d <= np.abs(r1 - r2)
    out = np.where(inside, np.pi * small ** 2, out)
    part = (~inside) & (d < r1 + r2) & (small > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        a1 = np.arccos(np.clip((d ** 2 + r1 ** 2 - r2 ** 2) / (2 * d * r1), -1, 1))
        a2 = np.arccos(np.clip((d ** 2 + r2 ** 2 - r1 ** 2) / (2 * d * r2), -1, 1))
        tri = 0.5 * np.sqrt(np.clip((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2), 0, None))
        lens = r1 ** 2 * a1 + r2 ** 2 * a2 - tri
    return np.where(part, lens, out)


def cut_cap_volume(radii: np.ndarray, kappa: np.ndarray, w: np.ndarray, c: float | np.ndarray, side: int,
                   n: int = 160) -> np.ndarray:
    """Volume of ellipsoids (T, 3 radii) above their floor (kappa below the centre) and on one side of a septum.

    The septum is the vertical plane w . (x, y) = c (relative to the centre); side=+1 keeps w.xy <= c, -1 keeps >= c.
    Each z-section is an ellipse cut by a line, whose area has a closed form; z is integrated numerically.
    """
    p, q, h = radii[:, 0:1], radii[:, 1:2], radii[:, 2:3]
    k = np.asarray(kappa, float)[:, None]
    uz = -k + (1 + k) * (np.arange(n) + 0.5) / n  # z / h from the floor to the top
    sig = np.sqrt(np.clip(1 - uz ** 2, 1e-12, None))
    delta = np.clip(side * np.asarray(c, float).reshape(-1, 1) / (sig * np.hypot(w[0] * p, w[1] * q)), -1, 1)
    area = p * q * sig ** 2 * (delta * np.sqrt(1 - delta ** 2) + np.arcsin(delta) + np.pi / 2)
    return area.sum(-1) * (1 + k[:, 0]) * h[:, 0] / n


def ellipse_disc_overlap(pr, qt, c, r, n: int = 64) -> np.ndarray:
    """Area shared by an ellipse (semi-axes pr along X, qt along Y, centre (c, 0)) and a disc (radius r, centre 0).

    Both are symmetric about Y = 0, so the overlap is the integral over X of twice the shorter half-chord.
    """
    pr, qt, c, r = np.broadcast_arrays(*(np.asarray(a, float) for a in (pr, qt, c, r)))
    lo, hi = np.maximum(c - pr, -r), np.minimum(c + pr, r)
    span = np.clip(hi - lo, 0, None)
    x = lo[..., None] + span[..., None] * (np.arange(n) + 0.5) / n
    he = qt[..., None] * np.sqrt(np.clip(1 - ((x - c[..., None]) / np.maximum(pr, 1e-9)[..., None]) ** 2, 0, None))
    hd = np.sqrt(np.clip(r[..., None] ** 2 - x ** 2, 0, None))
    return 2 * np.minimum(he, hd).sum(-1) * span / n


def sax_slice_count(long_axis_mm: float, spacing_mm: float) -> int:
    """Slices of a base-to-apex SAX stack: the ED long axis plus half a slice above the base, both ends included."""
    return int(np.ceil((long_axis_mm + 0.5 * spacing_mm) / spacing_mm)) + 1


class Heart:
    """Per-frame shape parameters of one subject's heart, solved from its recipe at the given phases."""

    def __init__(self, recipe: dict, phases: np.ndarray):
        self.recipe, self.phases = recipe, np.asarray(phases, float)
        fn, geo, tm, cond = recipe["function"], recipe["geometry"], recipe["timing"], recipe["conditions"]
        self.rot = frame_axes(geo)
        self.t0, self.u = wall_pattern(geo, self.rot)
        self._lv(fn, geo, tm, cond)
        self._rv(fn, geo, tm, cond)
        self._atria(fn, geo, tm, cond)
        self._jet(recipe, tm, cond)

    # ---- left ventricle --------------------------------------------------------------------
    def _lv(self, fn, geo, tm, cond):
        beta, s = geo["beta"], fn["sphericity"]
        edv, esv = fn["lv_edv_ml"] * 1e3, fn["lv_esv_ml"] * 1e3
        self.beta = beta
        self.L_ed = (edv * (1 + beta) / (np.pi * s ** 2 * kcap(beta))) ** (1 / 3)
        self.v_myo = fn["lv_mass_g"] / MYO_DENSITY * 1e3
        lp_ed = self.L_ed / (1 + beta)
        q_ed = edv / (np.pi * lp_ed * kcap(beta))
        t0, u = self.t0, self.u

        def b_of(tau, q):  # epicardial radius giving mean a^2 = q for wall T0 + tau u
            w = t0 + np.multiply.outer(tau, u)
            m1, m2 = w.mean(-1), (w * w).mean(-1)
            return m1 + np.sqrt(np.maximum(m1 ** 2 - m2 + q, 0))

        def myo_excess(tau):
            b = b_of(tau, q_ed)
            lpe = lp_ed + geo["apex_wall_frac"] * tau
            return np.pi * lpe * kcap(beta * lp_ed / lpe) * b ** 2 - edv - self.v_myo

        self.tau_ed = float(_bisect(myo_excess, 1.0, 40.0))
        self.t_apex = geo["apex_wall_frac"] * self.tau_ed
        f = motion.lv_fill(self.phases, tm, fn["e_frac"], cond["af"])
        self.fill = f
        self.v_lv = esv + (edv - esv) * f  # mm^3
        self.d = fn["mapse_mm"] * (1.0 - f)
        self.zb = -self.d
        self.lp = (self.L_ed - self.d) / (1 + beta)
        self.e = beta * self.lp
        self.zc = self.zb - self.e
        self.lpe = self.lp + self.t_apex
        self.b = np.sqrt((self.v_myo + self.v_lv) / (np.pi * self.lpe * kcap(self.e / self.lpe)))
        q = self.v_lv / (np.pi * self.lp * kcap(beta))
        c = self.b[:, None] - t0[None]
        A, B, C = (u * u).mean(), (c * u).mean(-1), (c * c).mean(-1) - q
        self.tau = (B - np.sqrt(np.maximum(B * B - A * C, 0))) / A

    def endo_radius(self, theta: np.ndarray, frame: int | slice = slice(None)) -> np.ndarray:
        """Equatorial endocardial radius a(theta) (mm) per frame."""
        idx = (np.asarray(theta) % (2 * np.pi)) / (2 * np.pi) * N_THETA
        i = np.clip(idx.astype(int), 0, N_THETA - 1)
        b, tau = np.atleast_1d(self.b[frame]), np.atleast_1d(self.tau[frame])
        return b[:, None] - self.t0[i][None] - tau[:, None] * self.u[i][None]

    def ring_radius(self, frame: int | slice = slice(None)) -> np.ndarray:
        """Largest mitral-ring (basal endocardial) radius per frame."""
        return self.endo_radius(THETA, frame).max(-1) * np.sqrt(1 - self.beta ** 2)

    # ---- right ventricle --------------------------------------------------------------------
    def _rv(self, fn, geo, tm, cond):
        f = motion.lv_fill(self.phases, tm, fn["e_frac"], cond["af"])
        edv, esv = fn["rv_edv_ml"] * 1e3, fn["rv_esv_ml"] * 1e3
        self.v_rv = esv + (edv - esv) * f
        self.z_tv = -geo["tv_drop_mm"] - fn["tapse_mm"] * (1.0 - f)
        self.z_rva = -geo["rv_apex_frac"] * self.L_ed
        self.hr = (self.z_tv - self.z_rva) / (1 + geo["rv_beta"])
        self.z_rc = self.z_tv - geo["rv_beta"] * self.hr
        ang = np.deg2rad(geo["rv_angle_deg"]) * np.sign(anterior_angle(self.rot))
        self.rv_dir = np.array([np.cos(ang), np.sin(ang)])
        self.rv_c = geo["rv_offset"] * self.b  # centre distance from the LV axis
        self.rv_wall = geo["rv_wall_mm"]
        self.rv_aspect = geo["rv_aspect"]
        zs = (np.arange(64) + 0.5) / 64  # integration grid along the RV
        z = self.z_rva + zs[None] * (self.z_tv - self.z_rva)[:, None]
        dz = (self.z_tv - self.z_rva) / 64
        prof = np.sqrt(np.clip(1 - ((z - self.z_rc[:, None]) / self.hr[:, None]) ** 2, 0, None))
        epi = self.b[:, None] * np.sqrt(np.clip(1 - ((z - self.zc[:, None]) / self.lpe[:, None]) ** 2, 0, None))

        def vol(req):
            r = req[:, None] * prof
            area = np.pi * self.rv_aspect * r ** 2 - ellipse_disc_overlap(self.rv_aspect * r, r, self.rv_c[:, None], epi)
            return area.sum(-1) * dz - self.v_rv

        self.req = _bisect(vol, np.full(len(f), 5.0), np.full(len(f), 150.0), n=24)

    # ---- atria --------------------------------------------------------------------------------
    def _atria(self, fn, geo, tm, cond):
        g = motion.atrial_fill(self.phases, tm, fn["passive_frac"], cond["af"])
        self.v_la = (fn["la_min_ml"] + (fn["la_max_ml"] - fn["la_min_ml"]) * g) * 1e3
        self.v_ra = (fn["ra_min_ml"] + (fn["ra_max_ml"] - fn["ra_min_ml"]) * g) * 1e3
        self.atrial_wall = hw = geo["atrial_wall_mm"]
        self.la_xy = np.asarray(geo["la_offset_mm"], float)
        self.ra_xy = geo["ra_dist"] * float(self.rv_c.max()) * self.rv_dir
        la0, ra0 = np.asarray(geo["la_shape"], float), np.asarray(geo["ra_shape"], float)
        k_ra = geo["la_kappa"]
        need = self.ring_radius() + np.hypot(*self.la_xy) + 1.5  # the LA floor must cover the mitral ring

        def la_kappa(s):
            return np.minimum(geo["la_kappa"], np.sqrt(np.clip(1 - need ** 2 / (s ** 2 * la0[0] * la0[1]), 0, None)))

        # interatrial septum: a plane normal to the LA->RA line, splitting their uncut extents at the largest
        w = (self.ra_xy - self.la_xy) / np.linalg.norm(self.ra_xy - self.la_xy)
        s_la = float(_bisect(lambda s: np.pi * la0.prod() * s ** 3 * kcap(la_kappa(s)) - self.v_la.max(), 1.0, 80.0).max())
        s_ra = (self.v_ra.max() / (np.pi * ra0.prod() * kcap(k_ra))) ** (1 / 3)
        e_la, e_ra = s_la * np.hypot(*(w * la0[:2])), s_ra * np.hypot(*(w * ra0[:2]))
        dist = np.linalg.norm(self.ra_xy - self.la_xy)
        c = float(w @ self.la_xy + dist * e_la / (e_la + e_ra))
        self.sep_w, self.sep_c = w, max(c, float(self.ring_radius().max()) + hw / 2 + 2.0)
        self.sep_half = hw / 2

        s = _bisect(lambda s: cut_cap_volume(s[:, None] * la0, la_kappa(s), w, self.sep_c - hw / 2 - w @ self.la_xy, 1)
                    - self.v_la, np.full(len(g), 1.0), np.full(len(g), 120.0))
        self.la_k, self.la_r = la_kappa(s), s[:, None] * la0
        self.la_zc = self.zb + self.la_k * self.la_r[:, 2]
        s = _bisect(lambda s: cut_cap_volume(s[:, None] * ra0, np.full(len(s), k_ra), w, self.sep_c + hw / 2 - w @ self.ra_xy, -1)
                    - self.v_ra, np.full(len(g), 1.0), np.full(len(g), 120.0))
        self.ra_k, self.ra_r = np.full(len(g), k_ra), s[:, None] * ra0
        self.ra_zc = self.z_tv + self.ra_k * self.ra_r[:, 2]

    # ---- regurgitant jet / flow void ---------------------------------------------------------
    def _jet(self, recipe, tm, cond):
        """Jet length (mm), radius (mm) and darkening per frame, plus its direction in the heart frame."""
        jet, g = recipe["jet"], cond["mr_grade"]
        tilt, azim = np.deg2rad(jet["direction_deg"])
        self.jet_dir = np.array([np.sin(tilt) * np.cos(azim), np.sin(tilt) * np.sin(azim), np.cos(tilt)])
        p = np.mod(self.phases, 1.0)
        t_es = tm["t_es"] + 0.5 * tm["ivr"]
        if jet.get("model", 1) >= 2:  # per-subject size and timing (recipes before it have none)
            start, dur = 0.02 + jet["onset"] * t_es, jet["duration"] * t_es
            x = np.clip((p - start) / max(dur, 1e-6), 0, 1)
            env = np.where((p > start) & (p < start + dur), np.sin(np.pi * x) ** 0.6, 0.0)
            la_h = self.la_r[:, 2] * (1 + self.la_k)
            self.jet_len, self.jet_rad = env * la_h * jet["length"], env * jet["radius_mm"]
            self.jet_depth = env * jet["depth"]
        elif g > 0:
            dur = {1: 0.55, 2: 0.85, 3: 1.0}[g] * t_es
            x = np.clip((p - 0.02) / dur, 0, 1)
            env = np.where((p > 0.02) & (p < 0.02 + dur), np.sin(np.pi * x) ** 0.6, 0.0)
            la_h = self.la_r[:, 2] * (1 + self.la_k)
            self.jet_len = env * la_h * (0.35 + 0.18 * g)
            self.jet_rad = env * (3.0 + 3.5 * g)
            self.jet_depth = env * (0.55 + 0.12 * g)
        elif jet["flow_void"]:
            c, w = jet["void_phase"] * t_es, 0.06
            env = np.clip(1 - np.abs(p - c) / w, 0, 1)
            self.jet_len, self.jet_rad, self.jet_depth = env * 7.0, env * 2.2, env * 0.45
        else:
            self.jet_len = self.jet_rad = self.jet_depth = np.zeros_like(p)

    # ---- state table for the renderer ---------------------------------------------------------
    def state(self) -> np.ndarray:
        """(T, K) float64 table of per-frame shape parameters, in the column order the render kernel reads."""
        rvc = self.rv_c[:, None] * self.rv_dir[None]
        cols = [self.zb, self.zc, self.lp, self.lpe, self.b, self.tau,
                rvc[:, 0], rvc[:, 1], self.z_rc, self.req, self.hr, self.z_tv,
                np.full_like(self.zb, self.la_xy[0]), np.full_like(self.zb, self.la_xy[1]), self.la_zc,
                self.la_r[:, 0], self.la_r[:, 1], self.la_r[:, 2],
                np.full_like(self.zb, self.ra_xy[0]), np.full_like(self.zb, self.ra_xy[1]), self.ra_zc,
                self.ra_r[:, 0], self.ra_r[:, 1], self.ra_r[:, 2],
                self.jet_len, self.jet_rad, self.jet_depth,
                np.full_like(self.zb, self.sep_w[0]), np.full_like(self.zb, self.sep_w[1]),
                np.full_like(self.zb, self.sep_c), np.full_like(self.zb, self.sep_half),
                np.full_like(self.zb, self.rv_dir[0]), np.full_like(self.zb, self.rv_dir[1]),
                np.full_like(self.zb, self.rv_aspect)]
        return np.ascontiguousarray(np.stack(cols, -1), dtype=np.float64)


def truths(recipe: dict) -> dict:
    """Volumes, EF, mass, atrial function, output and annular velocities from the continuous model."""
    fn, cov, tm, cond = recipe["function"], recipe["covariates"], recipe["timing"], recipe["conditions"]
    ef = lambda hi, lo: 100.0 * (hi - lo) / hi
    lv_sv = fn["lv_edv_ml"] - fn["lv_esv_ml"]
    fsv = lv_sv * (1 - fn["regurgitant_fraction"])
    out = dict(
        lv_edv_ml=fn["lv_edv_ml"], lv_esv_ml=fn["lv_esv_ml"], lv_sv_ml=lv_sv, lv_ef=ef(fn["lv_edv_ml"], fn["lv_esv_ml"]),
        rv_edv_ml=fn["rv_edv_ml"], rv_esv_ml=fn["rv_esv_ml"], rv_sv_ml=fn["rv_edv_ml"] - fn["rv_esv_ml"],
        rv_ef=ef(fn["rv_edv_ml"], fn["rv_esv_ml"]), lv_mass_g=fn["lv_mass_g"],
        la_max_ml=fn["la_max_ml"], la_min_ml=fn["la_min_ml"], la_ef=ef(fn["la_max_ml"], fn["la_min_ml"]),
        ra_max_ml=fn["ra_max_ml"], ra_min_ml=fn["ra_min_ml"], ra_ef=ef(fn["ra_max_ml"], fn["ra_min_ml"]),
        co_l_min=fsv * cov["hr_bpm"] / 1000.0, forward_sv_ml=fsv, regurgitant_fraction=fn["regurgitant_fraction"],
        mapse_mm=fn["mapse_mm"], tapse_mm=fn["tapse_mm"])
    out.update(motion.annular_velocities(tm, fn["e_frac"], cond["af"], fn["mapse_mm"]))
    if "measured" in recipe:  # recipes written before the measured EF existed have none
        out["lv_ef_measured"] = out["lv_ef"] + recipe["measured"]["lv_ef_error"]
    return {k: round(float(v), 4) for k, v in out.items()}
