"""bSSFP-like signal: tissue intensities, the static body around the heart, coil bias, PSF blur and Rician noise.

Intensities are in arbitrary units with the blood pool near 1.0 before the bias field (myocardium ~0.25,
fat ~0.85, lung ~0.05): bSSFP contrast follows T2/T1, so blood and fat are bright, myocardium,
muscle and liver intermediate-dark and aerated lung nearly black.
"""
from __future__ import annotations

import cv2
import numpy as np
from numba import njit

from .render import Geometry, Plane

# mean relative bSSFP signal per tissue (blood = 1), and the per-subject spread (SD, multiplicative)
TISSUE = dict(blood=1.0, myo=0.36, fat=1.05, lung=0.07, liver=0.4, muscle=0.33, marrow=0.55, csf=0.8,
              tissue=0.35, stomach=0.3, vessel=0.85)
SPREAD = 0.08  # recipes without `acquisition.tissue_spread`


def tissue_signal(rng: np.random.Generator, spread: float = SPREAD) -> dict:
    """Per-subject tissue intensities (scanner/coil variation of the contrast: log-normal with SD `spread`)."""
    out = {k: float(v * np.exp(rng.normal(0, spread))) for k, v in TISSUE.items()}
    out["blood"] = 1.0
    return out


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, shape, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-SD smooth random field (tissue texture); broad fields are drawn on a coarser grid (speed)."""
    f = max(1, int(sigma_px // 2))
    small = (-(-shape[0] // f), -(-shape[1] // f))
    g = cv2.GaussianBlur(rng.standard_normal(small).astype(np.float32), (0, 0), sigma_px / f)
    if f > 1:
        g = cv2.resize(g, (small[1] * f, small[0] * f), interpolation=cv2.INTER_LINEAR)[:shape[0], :shape[1]]
    return g / (g.std() + 1e-6)


class Textures:
    """Smooth random fields (`_smooth_noise`, flattened) for the planes of one view. For a stack of planes each
    scale is drawn once on a canvas twice the plane's size and every request takes its own random crop, so a
    SAX stack costs one draw per scale instead of one per plane and request (the body's main render cost)."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int], px: float, n_planes: int = 1):
        self.rng, self.shape, self.px, self.bank = rng, tuple(shape), px, {} if n_planes > 3 else None

    def __call__(self, mm: float) -> np.ndarray:
        H, W = self.shape
        if self.bank is None:
            return _smooth_noise(self.rng, (H, W), mm / self.px).reshape(-1)
        if mm not in self.bank:
            self.bank[mm] = _smooth_noise(self.rng, (2 * H, 2 * W), mm / self.px)
        r, c = self.rng.integers(0, H + 1), self.rng.integers(0, W + 1)
        return self.bank[mm][r:r + H, c:c + W].reshape(-1)


def _tube(P: np.ndarray, start: np.ndarray, direction, length: float, r: float) -> np.ndarray:
    """Points (N, 3) within radius r of a straight vessel segment (a cylinder: aorta, PA, caval veins)."""
    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    q = P - start
    t = q @ d
    return (t >= 0) & (t <= length) & ((q * q).sum(1) - t * t <= r * r)


def _network(tex, scale_mm: float, width: float, keep: float) -> np.ndarray:
    """Branching tube-like network in [0, 1]: the zero set of a smooth random field, broken into segments."""
    return np.exp(-(tex(scale_mm) / width) ** 2) * (tex(3 * scale_mm) > keep)


def _rim(mask: np.ndarray, shape, px: float, mm: float = 1.5) -> np.ndarray:
    """Inner rim (~mm wide) of a flat boolean mask drawn on a (H, W) grid (cortical bone, organ walls)."""
    r = max(1, int(round(mm / px)))
    m = mask.reshape(shape).astype(np.uint8)
    return (m & ~cv2.erode(m, np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)).reshape(-1).astype(bool)


def body_image(geom: Geometry, plane: Plane, tis: dict, rng: np.random.Generator,
               tex: Textures | None = None) -> np.ndarray:
    """Static (H, W) image of the thorax around the heart: skin fat and breasts, chest-wall muscle, ribs and
    sternum, lungs with bright branching vessels, the diaphragm with liver (hepatic veins, IVC), stomach
    (air over fluid) and spleen under the heart, great vessels (aorta, pulmonary artery, SVC), spine,
    mediastinal and patchy epicardial fat. `tex`: the view's texture source (default: fresh fields from `rng`)."""
    b = geom.recipe["geometry"]["body"]
    P = plane.points()
    H, W = plane.shape
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    hw, hd, fat, mus = b["half_width_mm"], b["half_depth_mm"], b["fat_mm"], b["muscle_mm"]
    tex = tex or Textures(rng, (H, W), plane.px)
    img = np.zeros(len(P), np.float32)
    skin = _ellipse(x, y, 0, 0, hw, hd)
    breast = np.zeros(len(P), bool)
    br = b.get("breast_mm", 0.0)
    if br > 0:  # two anterior fat/fibroglandular mounds
        for side in (-1.0, 1.0):
            breast |= (((x - side * 0.42 * hw) / (0.38 * hw)) ** 2 + ((y + hd - 0.35 * br) / br) ** 2
                       + ((z - b.get("breast_z_mm", -40.0)) / (0.45 * hw)) ** 2 <= 1.0) & (y < 0)
    img[skin | breast] = tis["fat"]
    gland = breast & ~skin & (tex(5.0) > 0.3)
    img[gland] = tis["tissue"] * 1.2
    wall = _ellipse(x, y, 0, 0, hw - fat, hd - fat)
    img[wall] = tis["muscle"]
    cav = _ellipse(x, y, 0, 0, hw - fat - mus, hd - fat - mus)
    # ribs (sloping down anteriorly) and sternum inside the muscle layer: marrow with a black cortex
    rho = np.sqrt((x / (hw - fat)) ** 2 + (y / (hd - fat)) ** 2)
    r_in = 1.0 - mus / (hw - fat)
    band = wall & ~cav & (rho < r_in + 0.6 * (1 - r_in)) & (rho > r_in + 0.1 * (1 - r_in))
    pitch, rib_w = b.get("rib_pitch_mm", 30.0), b.get("rib_mm", 11.0)
    zr = z + 0.45 * np.clip(-y, 0, None) + b.get("rib_phase_mm", 0.0)
    bone = band & (np.mod(zr, pitch) < rib_w) & (np.abs(x) > 22)
    bone |= band & (np.abs(x) < 16) & (y < 0)
    img[bone] = tis["marrow"] * 0.8
    img[_rim(bone, (H, W), plane.px)] = tis["lung"]
    # diaphragm dome: lifted under the heart, right side higher
    dome = (b["diaphragm_mm"] + b.get("dome_lift_mm", 0.0) + np.where(x < 0, 12.0, 0.0)
            - 30.0 * ((x / hw) ** 2 + (y / hd) ** 2))
    abdo = cav & (z < dome)
    lung = cav & ~abdo
    hx, hy = geom.base[0], geom.base[1]
    hilum = np.exp(-np.hypot(x - hx + 20, y - hy - 10) / 90.0)  # vessels thicker and brighter near the hilum
    ves = np.maximum(_network(tex, 6.0, 0.05 + 0.15 * hilum, 0.6), np.clip((tex(1.5) - 1.6) * 0.8, 0, 1))
    img[lung] = (tis["lung"] * (1 + 0.3 * tex(4.0)[lung])
                 + tis["vessel"] * (0.35 + 0.5 * hilum[lung]) * ves[lung])
    img[cav & (np.abs(z - dome) < 3.5)] = tis["muscle"]  # the diaphragm muscle
    liver = abdo & (x < 30.0) & (z < dome - 3.5)
    hep = _network(tex, 6.0, 0.1, 0.0)
    img[liver] = tis["liver"] * (1 + 0.08 * tex(3.0)[liver]) + 0.5 * tis["vessel"] * hep[liver]
    rest = abdo & ~liver & (z < dome - 3.5)
    spleen = rest & (y > 15.0)
    img[spleen] = tis["liver"] * 1.25 * (1 + 0.06 * tex(3.0)[spleen])
    sto = rest & ~spleen
    air = sto & (z > dome - b.get("stomach_air_mm", 15.0))
    fluid = np.where(tex(10.0) > -0.3, tis["stomach"] * 2.6, tis["stomach"])  # fluid vs food / collapsed
    img[sto] = fluid[sto] * (1 - 0.7 * _network(tex, 4.0, 0.1, 0.3)[sto])  # rugae
    img[air] = tis["lung"] * 0.3
    sy = b["spine_y_mm"]
    img[_ellipse(x, y, 0, sy - 18, 45, 22) & ~abdo] = tis["tissue"]  # posterior mediastinum
    img[_ellipse(x, y, 0, sy + 20, 75, 38)] = tis["muscle"]  # paraspinal muscles
    vert = _ellipse(x, y, 0, sy, 17, 15)
    img[vert] = tis["marrow"]
    img[_rim(vert, (H, W), plane.px)] = tis["lung"]
    img[_ellipse(x, y, 0, sy + 24, 7, 6)] = tis["csf"]
    ant = _ellipse(x, y, hx - 15, -(hd - fat - mus) + 10, 30, 12) & lung & (z > -40) & (z < 30)  # thymic fat
    img[ant] = tis["fat"] * (0.75 + 0.15 * tex(4.0)[ant])
    # great vessels (bright flowing blood): descending aorta, ascending aorta, pulmonary trunk, SVC, IVC
    ax, ay = b["aorta_mm"]
    ra = b["aorta_r_mm"]
    img[_ellipse(x, y, ax, sy + ay - 75.0, ra, ra)] = tis["vessel"]
    R = geom.R
    ez_ = R[:, 2]
    root = geom.to_patient(np.array([10.0, 0.0, 0.0])) + 18.0 * np.array([0.0, -1.0, 0.0]) + 6.0 * ez_
    ra_c = geom.to_patient(np.array([*geom.heart.ra_xy, float(geom.heart.ra_zc.max())]))
    vessels = [(root, (-0.25, -0.1, 1.0), 110.0, 1.1 * ra),
               (root + np.array([18.0, -16.0, 8.0]), (0.35, 0.55, 0.75), 55.0, b.get("pa_r_mm", 13.0)),
               (ra_c + np.array([-5.0, 0.0, 15.0]), (0.0, 0.05, 1.0), 100.0, 9.5),
               (ra_c - np.array([0.0, -5.0, 20.0]), (0.0, 0.1, -1.0), 120.0, 11.0)]
    for start, d, length, r in vessels:
        m = _tube(P, start, d, length, r)
        img[m] = tis["vessel"] * (0.9 + 0.1 * tex(6.0)[m])
    env = _envelope(geom, P)
    epi = (env >= 2) & (tex(7.0) > b.get("epi_fat_thr", -0.1))  # patchy epicardial fat (elsewhere: what lies outside)
    img[epi] = tis["fat"] * (0.85 + 0.1 * tex(3.0)[epi])
    fatmask = (skin & ~wall) | (breast & ~gland & ~wall) | epi | ant
    img = india_ink(img.reshape(H, W) * (1.0 + 0.05 * tex(1.0).reshape(H, W)), fatmask.reshape(H, W), plane.px)
    grain = geom.recipe["acquisition"].get("body_grain", 0.0)
    if grain:  # tissue texture (fat septa, muscle fibres, parenchyma): real tissues are not flat
        img *= np.clip(1.0 + grain * (tex(4.0) + tex(1.0)).reshape(H, W), 0.2, None)
    return img.astype(np.float32)


def india_ink(img: np.ndarray, fat: np.ndarray, px: float) -> np.ndarray:
    """bSSFP fat/water boundary cancellation: a dark ~1 mm line along every border of the fat mask."""
    f = fat.astype(np.uint8)
    r = max(1, int(round(1.2 / px)))
    rim = (cv2.dilate(f, np.ones((2 * r + 1, 2 * r + 1), np.uint8)) - f) > 0
    img[rim] *= 0.3
    return img


def _envelope(geom: Geometry, P: np.ndarray) -> np.ndarray:
    """0 outside the heart, 1 pericardium, 2 epicardial fat: shells around the chambers at their largest."""
    h = geom.heart
    q = geom.to_heart(P)
    x, y, z = q[:, 0], q[:, 1], q[:, 2]
    fat = 3.0 + 0.15 * max(geom.recipe["covariates"]["bmi"] - 20.0, 0.0)
    out = np.zeros(len(P), np.int8)
    ed = int(np.argmax(h.v_lv))
    la, ra = int(np.argmax(h.v_la)), int(np.argmax(h.v_ra))
    rvc = h.rv_c[ed] * h.rv_dir
    shapes = [((0.0, 0.0, h.zc[ed]), (h.b[ed],) * 2 + (h.lpe[ed],), h.zb[ed] + 4.0, -1),
              ((rvc[0], rvc[1], h.z_rc[ed]), (h.req[ed] + h.rv_wall,) * 2 + (h.hr[ed] + h.rv_wall,), h.z_tv[ed] + 4.0, -1),
              ((h.la_xy[0], h.la_xy[1], h.la_zc[la]), tuple(h.la_r[la] + h.atrial_wall), h.zb[la] - 3.0, 1),
              ((h.ra_xy[0], h.ra_xy[1], h.ra_zc[ra]), tuple(h.ra_r[ra] + h.atrial_wall), h.z_tv[ra] - 3.0, 1)]
    for level, grow in ((1, fat + 2.0), (2, fat)):
        inside = np.zeros(len(P), bool)
        for c, r, cut, sgn in shapes:
            e = ((x - c[0]) / (r[0] + grow)) ** 2 + ((y - c[1]) / (r[1] + grow)) ** 2 + ((z - c[2]) / (r[2] + grow)) ** 2
            inside |= (e <= 1.0) & (sgn * (z - cut) >= -grow)
        out[inside] = level
    return out


def bias_coeffs(rng: np.random.Generator) -> np.ndarray:
    """Random coil-sensitivity coefficients (one set per view, so a SAX stack shares one field)."""
    return np.r_[rng.normal(0, 0.35, 3), rng.uniform(0.5, 1.0)]


def bias_field(P: np.ndarray, amp: float, c: np.ndarray) -> np.ndarray:
    """Smooth multiplicative receive-coil sensitivity over patient positions (N, 3): anterior/posterior arrays
    make the chest wall and back bright and the centre darker, plus a random tilt; ~1 +- amp."""
    x, y, z = (P / 150.0).T
    f = 0.6 * y ** 2 + 0.25 * x ** 2 - 0.4 * y * c[3] + c[0] * x + c[1] * y + c[2] * z
    return (1.0 + amp * np.tanh(f)).astype(np.float32)


def sinc_kernel(frac: float, radius: int = 8) -> np.ndarray:
    """1D image-space PSF of keeping the central `frac` of k-space (zero-filled to the display matrix); DC gain 1."""
    h = np.sinc(frac * np.arange(-radius, radius + 1)).astype(np.float32)
    return h / h.sum()


@njit(cache=True)
def _ghost_noise(re, im, amp, s, state1, state2):
    """Per (H, W) frame of the (N, H, W) stacks: re += amp * re rolled H//2 rows (phase-encode ghost) + s * N(0, 1),
    im = s * N(0, 1); one pass, one frame-sized buffer, two seeded noise streams."""
    N, H, W = re.shape
    x1, x2 = np.uint64(state1), np.uint64(state2)
    sf, af = np.float32(s), np.float32(amp)
    sh = H // 2
    buf = np.empty((H, W), np.float32)
    for n in range(N):
        buf[:] = re[n]
        for r in range(H):
            rg = (r - sh) % H
            for c in range(W):
                x1, g1 = _gauss(x1)
                x2, g2 = _gauss(x2)
                re[n, r, c] = buf[r, c] + af * buf[rg, c] + sf * np.float32(g1)
                im[n, r, c] = sf * np.float32(g2)


@njit(cache=True)
def _magnitude(re, im, q):
    """re = |re + i im| rounded to multiples of 1/q (Rician magnitude and the scanner's integer scale), in place."""
    qf, inv = np.float32(q), np.float32(1.0 / q)
    for i in range(re.size):
        m = np.sqrt(re[i] * re[i] + im[i] * im[i])
        re[i] = np.float32(np.round(m * qf)) * inv


def _psf(stack: np.ndarray, kx: np.ndarray, ky: np.ndarray) -> None:
    """Separable PSF over a (N, H, W) float32 stack in place: rows of every frame in one call, then columns."""
    N, H, W = stack.shape
    one = np.ones(1, np.float32)
    rows = stack.reshape(N * H, W)
    cv2.sepFilter2D(rows, -1, kx, one, dst=rows, borderType=cv2.BORDER_REFLECT)
    for i in range(N):  # columns: per frame, so the reflecting border stays inside each frame
        cv2.sepFilter2D(stack[i], -1, one, ky, dst=stack[i], borderType=cv2.BORDER_REFLECT)


def kspace_rician(img: np.ndarray, sigma: float, f_read: float, f_pe: float, rng: np.random.Generator,
                  q: float | None = None, ghost: float = 0.0) -> np.ndarray:
    """Phase-encode ghost + truncated k-space + complex noise + magnitude on every frame of a (..., H, W) float32 array.

    Keeping the central f_read (columns) x f_pe (rows) of k-space is a separable sinc PSF (MR resolution,
    Gibbs ringing at sharp borders); the complex white noise passes the same filter (correlated noise, as
    in zero-filled reconstructions) and is scaled so the final pixel noise SD is `sigma`. `ghost` adds that
    fraction of each frame shifted half a FOV along the rows (breathing/motion ghost). With `q` the
    magnitude is rounded to multiples of 1/q in the same pass (see `quantise`).
    """
    kx, ky = sinc_kernel(f_read), sinc_kernel(f_pe)
    sd = float(np.sqrt((kx ** 2).sum() * (ky ** 2).sum()))
    flat = np.ascontiguousarray(img, np.float32).reshape(-1, *img.shape[-2:])
    im = np.empty_like(flat)
    _ghost_noise(flat, im, ghost, sigma / sd, int(rng.integers(1, 2**62)), int(rng.integers(1, 2**62)))
    _psf(flat, kx, ky)
    _psf(im, kx, ky)
    if q:
        _magnitude(flat.reshape(-1), im.reshape(-1), float(q))
    else:
        np.hypot(flat, im, out=flat)
    return flat.reshape(img.shape)


@njit(cache=True, inline="always")
def _gauss(x):
    """Next xorshift64* state and an approximately N(0,1) draw (Irwin-Hall sum of four 16-bit uniforms)."""
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    r = x * np.uint64(2685821657736338717)
    m = np.uint64(0xFFFF)
    s = (r & m) + ((r >> np.uint64(16)) & m) + ((r >> np.uint64(32)) & m) + (r >> np.uint64(48))
    return x, (float(s) - 131070.0) * (1.7320508075688772 / 65536.0)


QUANT = 512.0  # stored intensities are multiples of 1/512 (a scanner's integer magnitudes; compresses well)


def quantise(img: np.ndarray, q: float = QUANT) -> np.ndarray:
    """Round in place to multiples of 1/q (like a scanner's integer magnitudes; compresses far better)."""
    img *= q
    np.round(img, out=img)
    img /= q
    return img
