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
SPREAD = 0.08


def tissue_signal(rng: np.random.Generator) -> dict:
    """Per-subject tissue intensities (scanner/coil variation of the contrast)."""
    out = {k: float(v * np.exp(rng.normal(0, SPREAD))) for k, v in TISSUE.items()}
    out["blood"] = 1.0
    return out


def _ellipse(x, y, cx, cy, rx, ry):
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, shape, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-SD smooth random field (tissue texture)."""
    f = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma_px)
    return f / (f.std() + 1e-6)


def body_image(geom: Geometry, plane: Plane, tis: dict, rng: np.random.Generator) -> np.ndarray:
    """Static (H, W) image of chest wall, fat, lungs (with vessels), liver, stomach, spine, aorta and pericardial fat."""
    b = geom.recipe["geometry"]["body"]
    P = plane.points()
    H, W = plane.shape
    x, y, z = P[:, 0], P[:, 1], P[:, 2]
    hw, hd, fat, mus = b["half_width_mm"], b["half_depth_mm"], b["fat_mm"], b["muscle_mm"]
    tex = lambda mm: _smooth_noise(rng, (H, W), mm / plane.px).reshape(-1)
    img = np.zeros(len(P), np.float32)
    img[_ellipse(x, y, 0, 0, hw, hd)] = tis["fat"]
    img[_ellipse(x, y, 0, 0, hw - fat, hd - fat)] = tis["muscle"]
    cav = _ellipse(x, y, 0, 0, hw - fat - mus, hd - fat - mus)
    dome = b["diaphragm_mm"] + np.where(x < 0, 12.0, 0.0) - 30.0 * ((x / hw) ** 2 + (y / hd) ** 2)
    abdo = cav & (z < dome)
    lung = cav & ~abdo
    vessels = np.clip((tex(1.5) - 1.6) * 0.6, 0, 1) * 0.5  # bright pulmonary vessels on dark parenchyma
    img[lung] = tis["lung"] * (1 + 0.3 * tex(4.0)[lung]) + vessels[lung]
    liver = abdo & (x < 30.0)
    img[liver] = tis["liver"] * (1 + 0.08 * tex(3.0)[liver]) + np.clip((tex(2.0) - 1.8) * 0.4, 0, 0.3)[liver]
    sto = abdo & ~liver
    img[sto] = np.where(tex(12.0)[sto] > 0.3, tis["stomach"] * 2.4, tis["stomach"])  # fluid-filled vs collapsed
    sy = b["spine_y_mm"]
    img[_ellipse(x, y, 0, sy - 18, 45, 22) & ~abdo] = tis["tissue"]  # posterior mediastinum
    img[_ellipse(x, y, 0, sy + 20, 75, 38)] = tis["muscle"]  # paraspinal muscles
    img[_ellipse(x, y, 0, sy, 17, 15)] = tis["marrow"]
    img[_ellipse(x, y, 0, sy + 24, 7, 6)] = tis["csf"]
    ax, ay = b["aorta_mm"]
    img[_ellipse(x, y, ax, sy + ay - 75.0, b["aorta_r_mm"], b["aorta_r_mm"]) & ~abdo] = tis["vessel"]
    env = _envelope(geom, P)
    img[env >= 1] = tis["tissue"]
    img[env >= 2] = tis["fat"] * (0.85 + 0.1 * tex(3.0)[env >= 2])
    sub = _ellipse(x, y, 0, 0, hw, hd) & ~_ellipse(x, y, 0, 0, hw - fat, hd - fat)
    img = img.reshape(H, W) * (1.0 + 0.05 * tex(1.0).reshape(H, W))
    return india_ink(img, (sub | (env >= 2)).reshape(H, W), plane.px).astype(np.float32)


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


def ghost(img: np.ndarray, amp: float) -> np.ndarray:
    """Faint copy of each frame shifted half a FOV along the phase-encode (row) axis: breathing/motion ghost, in place."""
    if amp > 0:
        img += amp * np.roll(img, img.shape[-2] // 2, axis=-2)
    return img


@njit(cache=True)
def _normal_kernel(out, state):
    """Fill a flat float32 array with approximately N(0, 1) draws (fast, seeded)."""
    x = np.uint64(state)
    for i in range(out.size):
        x, g = _gauss(x)
        out[i] = g


def kspace_rician(img: np.ndarray, sigma: float, f_read: float, f_pe: float, rng: np.random.Generator) -> np.ndarray:
    """Truncated k-space + complex noise + magnitude on every frame of a (..., H, W) float32 array.

    Keeping the central f_read (columns) x f_pe (rows) of k-space is a separable sinc PSF (MR resolution,
    Gibbs ringing at sharp borders); the complex white noise passes the same filter (correlated noise, as
    in zero-filled reconstructions) and is scaled so the final pixel noise SD is `sigma`.
    """
    kx, ky = sinc_kernel(f_read), sinc_kernel(f_pe)
    sd = float(np.sqrt((kx ** 2).sum() * (ky ** 2).sum()))
    s = sigma / sd
    flat = np.ascontiguousarray(img, np.float32).reshape(-1, *img.shape[-2:])
    n1, n2 = np.empty_like(flat), np.empty_like(flat)
    _normal_kernel(n1.reshape(-1), int(rng.integers(1, 2**62)))
    _normal_kernel(n2.reshape(-1), int(rng.integers(1, 2**62)))
    flat += s * n1
    for i in range(len(flat)):
        cv2.sepFilter2D(flat[i], -1, kx, ky, dst=flat[i], borderType=cv2.BORDER_REFLECT)
        cv2.sepFilter2D(n2[i], -1, kx, ky, dst=n2[i], borderType=cv2.BORDER_REFLECT)
    n2 *= s
    np.hypot(flat, n2, out=flat)
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
