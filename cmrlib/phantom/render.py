"""Slice the 3D phantom along the imaging planes: geometry of the views, the static body and the beating heart.

Patient coordinates are DICOM LPS (mm): +x patient left, +y posterior, +z superior; the heart frame is
described in `anatomy`. A plane maps pixel (row r, column c) to O + (c - (W-1)/2) px u + (r - (H-1)/2) px v,
the same convention as DICOM ImageOrientationPatient (u along a row, v down a column).

The heart is rasterised by a numba kernel: each structure's approximate signed distance gives the hard
label at the pixel centre (ground truth) and a partial-volume occupancy whose ramp width combines the
pixel size and the slice thickness projected on the boundary normal (anti-aliasing and through-slice
partial volume without supersampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .. import labels as L
from .anatomy import N_THETA, THETA, Heart, sax_slice_count

L_DIR, P_DIR, S_DIR = np.eye(3)


@dataclass
class Plane:
    """One image plane: origin (FOV centre), in-plane unit vectors u (columns) and v (rows), all in LPS mm."""

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    shape: tuple[int, int]
    px: float
    thickness: float

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.u, self.v)

    def points(self) -> np.ndarray:
        """(H*W, 3) pixel-centre positions."""
        H, W = self.shape
        r = (np.arange(H) - (H - 1) / 2) * self.px
        c = (np.arange(W) - (W - 1) / 2) * self.px
        return (self.origin[None, None] + r[:, None, None] * self.v + c[None, :, None] * self.u).reshape(-1, 3)

    def to_pixel(self, p: np.ndarray) -> np.ndarray:
        """(..., 3) LPS points -> (..., 2) (x, y) = (column, row) pixel coordinates (in-plane projection)."""
        d = p - self.origin
        H, W = self.shape
        return np.stack([d @ self.u / self.px + (W - 1) / 2, d @ self.v / self.px + (H - 1) / 2], -1)


def _rot(axis: np.ndarray, deg: float) -> np.ndarray:
    """Rotation matrix about a unit axis (Rodrigues)."""
    a = np.deg2rad(deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _inplane(n: np.ndarray, right: np.ndarray, down: np.ndarray, deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Display axes on a plane: u along the projection of `right`, v orthogonal and along `down`, then rotated."""
    u = right - right.dot(n) * n
    u /= np.linalg.norm(u)
    v = np.cross(n, u)
    if v.dot(down) < 0:
        v = -v
    a = np.deg2rad(deg)
    return np.cos(a) * u + np.sin(a) * v, -np.sin(a) * u + np.cos(a) * v


class Geometry:
    """The subject's heart placed in the chest and its imaging planes."""

    def __init__(self, heart: Heart, recipe: dict):
        self.heart, self.recipe = heart, recipe
        self.acq = recipe["acquisition"]
        self.R = heart.rot
        hp = recipe["geometry"]["heart_pos_mm"]
        self.base = np.array([hp[0], hp[1], 0.0])
        H, W = self.acq["matrix"]
        self.shape, self.px = (int(H), int(W)), float(self.acq["pixel_mm"])
        self.centre_h, self.radius_h = self._bounds()

    def to_heart(self, p: np.ndarray) -> np.ndarray:
        return (p - self.base) @ self.R

    def to_patient(self, h: np.ndarray) -> np.ndarray:
        return self.base + h @ self.R.T

    def _bounds(self) -> tuple[np.ndarray, float]:
        """Spheres (heart frame) that hold every chamber in every frame, and one sphere around them all."""
        h = self.heart
        sph = []

        def chain(xy, z0, z1, r, k=4):  # spheres along a vertical segment of radius r
            zs = np.linspace(z0, z1, 2 * k + 1)[1::2]
            half = (z1 - z0) / (2 * k)
            sph.extend((np.array([xy[0], xy[1], z]), float(np.hypot(r, half))) for z in zs)

        chain((0.0, 0.0), -h.L_ed - h.t_apex - 2, 2.0, h.b.max() + 2)
        rv = h.rv_c.max() * h.rv_dir
        chain(rv, h.z_rva - h.rv_wall - 2, h.z_tv.max() + 2, h.req.max() + h.rv_wall + 2 + np.ptp(h.rv_c))
        for xy, r, zc in ((h.la_xy, h.la_r, h.la_zc), (h.ra_xy, h.ra_r, h.ra_zc)):
            chain(xy, zc.min() - r[:, 2].max() - 3, zc.max() + r[:, 2].max() + 3, r[:, :2].max() + h.atrial_wall + 2, 2)
        self.spheres = sph
        c = np.mean([p for p, _ in sph], 0)
        return c, float(max(np.linalg.norm(p - c) + r for p, r in sph))

    def sax_planes(self) -> list[Plane]:
        """Base-to-apex short-axis stack, tilted by the planning error, with breath-hold in-plane shifts."""
        a = self.acq
        ez, ex = self.R[:, 2], self.R[:, 0]
        tilt = a["sax_tilt_deg"]
        n = _rot(ex, tilt[0]) @ _rot(self.R[:, 1], tilt[1]) @ ez
        u, v = _inplane(n, L_DIR, P_DIR, a["inplane_deg"]["SAX"])
        sp = a["sax_spacing_mm"]
        top = 0.5 * sp
        nz = a["n_slices"] or sax_slice_count(self.heart.L_ed, sp)
        shift = np.random.default_rng([self.recipe["noise_seed"], 11]).normal(0, a["sax_misreg_mm"] or 0.0, (nz, 2))
        planes = []
        for k in range(nz):
            centre = self.to_patient(np.array([12.0, 0.0, top - k * sp]))
            centre = centre - (centre - self.base - (top - k * sp) * ez).dot(n) * n  # onto the slice plane
            fs = np.asarray(a["fov_shift_mm"]["SAX"]) + shift[k]
            planes.append(Plane(centre + fs[0] * u + fs[1] * v, u, v, self.shape, self.px, a["sax_thickness_mm"]))
        return planes

    def lax_plane(self, view: str) -> Plane:
        """4CH (long axis + RV direction) or 2CH (long axis + its perpendicular) with rotation/tilt errors."""
        a = self.acq
        ex, ey, ez = self.R.T
        if view == "4CH":  # planned through the LV long axis and the tricuspid valve: it holds the RV/RA direction
            d = self.heart.rv_dir[0] * ex + self.heart.rv_dir[1] * ey
            n0, tilt_axis, right, down = np.cross(ez, d), d, L_DIR, P_DIR
        elif view == "2CH":
            n0, tilt_axis, right, down = ex, ey, L_DIR, -S_DIR
        else:
            raise ValueError(f"phantom renders SAX, 2CH, 4CH; got view {view!r}")
        n = _rot(ez, a["lax_rot_deg"][view]) @ _rot(tilt_axis, a["lax_tilt_deg"][view]) @ n0
        # planned through the mitral-valve centre: tilt errors pivot there and foreshorten the apex
        through = self.to_patient(np.array([0.0, 0.0, -0.1 * self.heart.L_ed])) + a["lax_offset_mm"][view] * n
        u, v = _inplane(n, right, down, a["inplane_deg"][view])
        c = self.to_patient(self.centre_h)
        c = c - (c - through).dot(n) * n
        fs = a["fov_shift_mm"][view]
        return Plane(c + fs[0] * u + fs[1] * v, u, v, self.shape, self.px, a["lax_thickness_mm"])

    def crop(self, plane: Plane) -> tuple[slice, slice] | None:
        """Pixel window of the plane that the heart can reach (None when the slice misses it)."""
        H, W = plane.shape
        lo, hi = np.array([np.inf, np.inf]), np.array([-np.inf, -np.inf])
        for c, r in self.spheres:
            p = self.to_patient(c)
            dist = (p - plane.origin).dot(plane.normal)
            reach = r + plane.thickness / 2 + plane.px
            if abs(dist) < reach:
                rad = np.sqrt(reach ** 2 - dist ** 2) / plane.px + 2
                xy = plane.to_pixel(p)
                lo, hi = np.minimum(lo, xy - rad), np.maximum(hi, xy + rad)
        if not np.isfinite(lo).all():
            return None
        rows = slice(int(np.clip(np.floor(lo[1]), 0, H)), int(np.clip(np.ceil(hi[1]), 0, H)))
        cols = slice(int(np.clip(np.floor(lo[0]), 0, W)), int(np.clip(np.ceil(hi[0]), 0, W)))
        if rows.stop <= rows.start or cols.stop <= cols.start:
            return None
        return rows, cols


# ---------------------------------------------------------------------------------------------
# numba kernel
@njit(cache=True, fastmath=True, inline="always")
def _alpha(d, c, px, th):
    w = np.sqrt(px * px * (1.0 - c * c) + th * th * c * c) + 1e-6
    a = 0.5 - d / w
    return 0.0 if a < 0.0 else (1.0 if a > 1.0 else a)


@njit(cache=True, fastmath=True, inline="always")
def _ell(dx, dy, dz, A, B, C, n0, n1, n2):
    gx, gy, gz = dx / (A * A), dy / (B * B), dz / (C * C)
    g = np.sqrt(dx * gx + dy * gy + dz * gz) + 1e-9
    gg = np.sqrt(gx * gx + gy * gy + gz * gz) + 1e-12
    return (g - 1.0) * g / gg, abs(gx * n0 + gy * n1 + gz * n2) / gg


@njit(cache=True, fastmath=True, inline="always")
def _flow(x, y, z, phase, famp, ph0, ph1):
    """Slow blood-flow signal variation (inflow / dephasing) drifting over the cycle: 1 +- famp."""
    return 1.0 + famp * 0.5 * (np.sin(0.09 * x + 0.05 * y + 0.07 * z + ph0 + 4.4 * phase)
                               + np.sin(-0.06 * x + 0.1 * y - 0.045 * z + ph1 - 2.5 * phase))


@njit(cache=True, fastmath=True)
def _heart_kernel(pts, nrm, px, th, state, t0, uu, jet_dir, rv_wall, a_wall, bg, col, lut, extra, out_img, out_lab):
    T, N = out_img.shape
    pap0, pap1, pap_r, trab, famp, ph0, ph1 = extra[0], extra[1], extra[2], extra[3], extra[4], extra[5], extra[6]
    pap_pos, slow, fine, gap, trab_d = extra[7], extra[8], extra[9], extra[10], extra[11]
    n0, n1, n2 = nrm[0], nrm[1], nrm[2]
    cz = abs(n2)
    m = px + th
    two_pi = 2.0 * np.pi
    for t in range(T):
        s = state[t]
        zb, zc, lp, lpe, b, tau = s[0], s[1], s[2], s[3], s[4], s[5]
        rvx, rvy, zrc, req, hr, ztv = s[6], s[7], s[8], s[9], s[10], s[11]
        jl, jr, jd = s[24], s[25], s[26]
        pap = np.empty((2, 2))
        for pk in range(2):
            ph = pap0 if pk == 0 else pap1
            jj = int(ph / two_pi * N_THETA) % N_THETA
            ar_p = b - t0[jj] - tau * uu[jj]
            rr = pap_pos * ar_p if gap < 0.0 else ar_p - gap * pap_r  # gap >= 0: anchored in the wall
            pap[pk, 0], pap[pk, 1] = rr * np.cos(ph), rr * np.sin(ph)
        for i in range(N):
            x, y, z = pts[i, 0], pts[i, 1], pts[i, 2]
            val = bg[i]
            fl = -1.0  # blood-flow signal factor, computed when a blood pool is first painted
            lab = 0
            # right ventricle (wall, then cavity), below the tricuspid plane; elliptic section, radial axis shorter
            dz = z - zrc
            if abs(dz) < hr + rv_wall + m and z < ztv + m:
                dx, dy = x - rvx, y - rvy
                if abs(dx) < req + rv_wall + m and abs(dy) < req + rv_wall + m:
                    rc, rs, asp = s[31], s[32], s[33]
                    dr, dt = dx * rc + dy * rs, -dx * rs + dy * rc
                    nr, nt = n0 * rc + n1 * rs, -n0 * rs + n1 * rc
                    ap = _alpha(z - ztv, cz, px, th)
                    d, c = _ell(dr, dt, dz, asp * req + rv_wall, req + rv_wall, hr + rv_wall, nr, nt, n2)
                    a = _alpha(d, c, px, th) * ap
                    if a > 0.0:
                        val = val * (1 - a) + a * col[1]
                        d, c = _ell(dr, dt, dz, asp * req, req, hr, nr, nt, n2)
                        a = _alpha(d, c, px, th) * ap
                        fl = _flow(x, y, z, t / T, famp, ph0, ph1) if fl < 0 else fl
                        val = val * (1 - a) + a * col[2] * fl
                        if d < 0.0 and z <= ztv:
                            lab = 3
            # atria (wall, cavity) above their valve planes, split by the interatrial septum; RA first, LA over it
            sd = x * s[27] + y * s[28] - s[29]
            cs = abs(s[27] * n0 + s[28] * n1)
            for k in range(2):
                o = 18 if k == 0 else 12
                floor = ztv if k == 0 else zb
                dsep = -sd if k == 0 else sd
                if z > floor - m and dsep < m:
                    ax, ay, az, ra, rb, rc = s[o], s[o + 1], s[o + 2], s[o + 3], s[o + 4], s[o + 5]
                    dx, dy, dz = x - ax, y - ay, z - az
                    lim = a_wall + m
                    if abs(dx) < ra + lim and abs(dy) < rb + lim and abs(dz) < rc + lim:
                        ap = _alpha(floor - z, cz, px, th) * _alpha(dsep, cs, px, th)
                        d, c = _ell(dx, dy, dz, ra + a_wall, rb + a_wall, rc + a_wall, n0, n1, n2)
                        a = _alpha(d, c, px, th) * ap
                        if a > 0.0:
                            val = val * (1 - a) + a * col[1]
                            d, c = _ell(dx, dy, dz, ra, rb, rc, n0, n1, n2)
                            a = _alpha(d, c, px, th) * _alpha(floor - z, cz, px, th) * _alpha(dsep + s[30], cs, px, th)
                            fl = _flow(x, y, z, t / T, famp, ph0, ph1) if fl < 0 else fl
                            val = val * (1 - a) + a * col[3] * fl
                            if d < 0.0 and z > floor and dsep + s[30] < 0.0:
                                lab = 5 if k == 0 else 4
                            if k == 1 and jd > 0.0 and a > 0.0:  # regurgitant jet / flow void
                                hl = 0.5 * jl + 1e-6
                                ex, ey, ez = x - jet_dir[0] * hl, y - jet_dir[1] * hl, z - zb - jet_dir[2] * hl
                                al = ex * jet_dir[0] + ey * jet_dir[1] + ez * jet_dir[2]
                                pp = ex * ex + ey * ey + ez * ez - al * al
                                q = pp / (jr * jr + 1e-6) + al * al / (hl * hl)
                                if q < 1.0:
                                    val *= 1.0 - jd * a * np.sqrt(1.0 - q)
            # left ventricle: epicardium (myocardium colour) then endocardium (blood), below the mitral plane
            dz = z - zc
            if z < zb + m and abs(dz) < lpe + m and abs(x) < b + m and abs(y) < b + m:
                ap = _alpha(z - zb, cz, px, th)
                d, c = _ell(x, y, dz, b, b, lpe, n0, n1, n2)
                a = _alpha(d, c, px, th) * ap
                if a > 0.0:
                    val = val * (1 - a) + a * col[1]
                    if d < 0.0 and z <= zb:
                        lab = 2
                    th_i = np.arctan2(y, x)
                    if th_i < 0:
                        th_i += two_pi
                    j = int(th_i / two_pi * N_THETA)
                    if j >= N_THETA:
                        j = N_THETA - 1
                    ar = b - t0[j] - tau * uu[j]
                    d, c = _ell(x, y, dz, ar, ar, lp, n0, n1, n2)
                    a = _alpha(d, c, px, th) * ap
                    fl = _flow(x, y, z, t / T, famp, ph0, ph1) if fl < 0 else fl
                    # slow flow: darker toward the apex and near the wall, plus a finer swirling pattern
                    ap_w = min(max(-dz / lp, 0.0), 1.0)
                    wall_w = min(max(1.0 + d / 10.0, 0.0), 1.0)
                    flv = fl * (1.0 - slow * ap_w * ap_w - 0.5 * slow * wall_w) * (
                        1.0 + fine * 0.5 * (np.sin(0.21 * x + 0.17 * z + 6.3 * t / T + ph0)
                                            + np.sin(0.13 * x - 0.19 * y + 0.1 * z - 3.1 * t / T + ph1)))
                    val = val * (1 - a) + a * col[0] * flv
                    if d < 0.0 and z <= zb:
                        lab = 1
                    if a > 0.0:
                        # trabeculae: dark endocardial fringe (6 mm), strongest toward the apex
                        if trab_d <= 0.0 and d > -6.0:  # older recipes: a smooth dark fringe
                            w = (1.0 + d / 6.0) * (0.35 + 0.65 * min(max(-dz / lp, 0.0), 1.0))
                            val *= 1.0 - a * trab * w * (0.5 + 0.5 * np.sin(17.0 * th_i + 0.25 * z)) * (
                                0.6 + 0.4 * np.sin(7.0 * th_i - 0.3 * z + 1.3))
                        elif trab_d > 0.0:
                            # muscular fingers (myocardial signal) of varying depth reaching into the cavity
                            apw = 0.45 + 0.55 * min(max(-dz / lp, 0.0), 1.0)
                            dep = trab_d * apw * (0.6 + 0.4 * np.sin(5.0 * th_i + 0.11 * z + ph0))
                            if d > -dep:
                                fing = (np.sin(19.0 * th_i + 0.21 * z + ph1) + 0.7 * np.sin(31.0 * th_i - 0.17 * z + ph0)
                                        + 1.2 * (1.0 + d / (dep + 1e-6)) - 0.6) * 2.0
                                fing = 0.0 if fing < 0.0 else (1.0 if fing > 1.0 else fing)
                                wt = a * trab * fing
                                val = val * (1.0 - wt) + wt * col[1]
                        # papillary muscles: two myocardial rods from the mid-ventricle toward the apex
                        for pk in range(2):
                            qx, qy = x - pap[pk, 0], y - pap[pk, 1]
                            if abs(qx) < pap_r + m and abs(qy) < pap_r + m and abs(dz + 0.4 * lp) < 0.38 * lp + m:
                                d2, c2 = _ell(qx, qy, dz + 0.4 * lp, pap_r, pap_r, 0.38 * lp, n0, n1, n2)
                                a2 = _alpha(d2, c2, px, th) * a
                                if a2 > 0.0:
                                    val = val * (1 - a2) + a2 * col[1]
            out_img[t, i] = val
            out_lab[t, i] = lut[lab]


def _extra(recipe: dict) -> np.ndarray:
    """Static texture parameters for the kernel: papillary angles (rad), radius and radial position,
    trabeculation, flow amplitude and phases, slow apical flow, fine flow pattern, papillary anchoring in the wall
    and trabecular depth (older recipes: defaults, i.e. free-standing papillary rods and a smooth dark fringe)."""
    g = recipe["geometry"]
    return np.array([*np.deg2rad(g["papillary_deg"]) % (2 * np.pi), g["papillary_mm"] * g.get("papillary_scale", 1.0),
                     g["trabeculation"], g["flow_amp"], *g["flow_phase"], g.get("papillary_pos", 0.55),
                     g.get("slow_flow", 0.0), g.get("flow_fine", 0.0), g.get("papillary_gap", -1.0),
                     g.get("trabecular_mm", 0.0)], np.float64)


def heart_layer(geom: Geometry, plane: Plane, bg: np.ndarray, colours: np.ndarray, lut: np.ndarray,
                state: np.ndarray, img: np.ndarray, lab: np.ndarray) -> None:
    """Fill (T, H, W) `img`/`lab` with the heart composited over a static background image (in place)."""
    T = state.shape[0]
    H, W = plane.shape
    img[:] = bg[None]
    lab[:] = 0
    win = geom.crop(plane)
    if win is None:
        return
    rows, cols = win
    pts = geom.to_heart(plane.points().reshape(H, W, 3)[rows, cols].reshape(-1, 3))
    h = geom.heart
    bgc = np.ascontiguousarray(bg[rows, cols].reshape(-1), dtype=np.float32)
    oi = np.empty((T, pts.shape[0]), np.float32)
    ol = np.empty((T, pts.shape[0]), np.uint8)
    _heart_kernel(np.ascontiguousarray(pts), geom.R.T @ plane.normal, plane.px, plane.thickness, state, h.t0, h.u,
                  h.jet_dir, h.rv_wall, h.atrial_wall, bgc, colours.astype(np.float64), lut, _extra(geom.recipe), oi, ol)
    hh, ww = rows.stop - rows.start, cols.stop - cols.start
    img[:, rows, cols] = oi.reshape(T, hh, ww)
    lab[:, rows, cols] = ol.reshape(T, hh, ww)


def mitral_points(geom: Geometry, plane: Plane, view: str) -> np.ndarray:
    """(T, 2, 2) pixel (x, y) of the mitral insertion points where the plane cuts the basal endocardial ring.

    Order follows `cmrlib.record.LANDMARKS`: 2CH (anterior, inferior), 4CH (lateral, septal).
    """
    h = geom.heart
    n = geom.R.T @ plane.normal
    o = geom.to_heart(plane.origin)
    ring = h.endo_radius(THETA) * np.sqrt(1 - h.beta ** 2)  # (T, N_THETA)
    pts = np.stack([ring * np.cos(THETA), ring * np.sin(THETA), np.broadcast_to(h.zb[:, None], ring.shape)], -1)
    side = (pts - o) @ n  # signed distance of each ring point from the plane
    if view == "4CH":
        ref = np.array([1.0, 0.0, 0.0])  # septal = toward the RV
    else:
        ref = geom.R.T @ np.array([0.0, -1.0, 0.0])  # anterior
    out = np.zeros((len(h.zb), 2, 3))
    for t in range(len(h.zb)):
        s = side[t]
        k = np.nonzero(np.sign(s) != np.sign(np.roll(s, -1)))[0]
        cand = []
        for j in k:
            j2 = (j + 1) % N_THETA
            w = s[j] / (s[j] - s[j2])
            cand.append(pts[t, j] + w * (pts[t, j2] - pts[t, j]))
        if len(cand) < 2:  # plane misses the ring: take the two ring points nearest to it
            j = np.argsort(np.abs(s))[:2]
            cand = [pts[t, j[0]], pts[t, j[1]]]
        cand = sorted(cand, key=lambda p: p.dot(ref))
        lo, hi = cand[0], cand[-1]
        out[t] = [hi, lo] if view == "2CH" else [lo, hi]  # 2CH: anterior first; 4CH: lateral first
    pix = plane.to_pixel(geom.to_patient(out.reshape(-1, 3))).reshape(len(h.zb), 2, 2)
    return pix


def label_lut(view: str) -> np.ndarray:
    """Kernel label codes (canonical values) -> labels kept in this view (SAX keeps LV, MYO, RV only)."""
    keep = (L.LV, L.MYO, L.RV) if view == "SAX" else (L.LV, L.MYO, L.RV, L.LA, L.RA)
    return np.array([k if k in keep else L.BG for k in range(L.N_CLASSES)], np.uint8)
