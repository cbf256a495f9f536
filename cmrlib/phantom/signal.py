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
TISSUE = dict(blood=1.0, myo=0.32, fat=1.05, lung=0.07, liver=0.4, muscle=0.33, marrow=0.55, csf=0.8,
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
    return (img.reshape(H, W) * (1.0 + 0.05 * tex(1.0).reshape(H, W))).astype(np.float32)


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


def blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """In-plane Gaussian PSF on every 2D frame of a contiguous (..., H, W) float32 array, in place."""
    if sigma_px > 0:
        flat = img.reshape(-1, *img.shape[-2:])
        for i in range(len(flat)):
            cv2.GaussianBlur(flat[i], (0, 0), sigma_px, dst=flat[i])
    return img


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


@njit(cache=True, fastmath=True)
def _rician_kernel(img, sigma, state):
    """In place: |img + sigma (n1 + i n2)| for a flat float32 array."""
    x = np.uint64(state)
    for i in range(img.size):
        x, g1 = _gauss(x)
        x, g2 = _gauss(x)
        a = img[i] + sigma * g1
        b = sigma * g2
        img[i] = np.sqrt(a * a + b * b)


def rician(img: np.ndarray, sigma: float, rng: np.random.Generator, inplace: bool = False) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (Rician statistics: dark areas biased up)."""
    out = img if inplace and img.dtype == np.float32 and img.flags.c_contiguous else np.ascontiguousarray(img, np.float32).copy()
    _rician_kernel(out.reshape(-1), float(sigma), int(rng.integers(1, 2**62)))
    return out


def quantise(img: np.ndarray, q: float = QUANT) -> np.ndarray:
    """Round in place to multiples of 1/q (like a scanner's integer magnitudes; compresses far better)."""
    img *= q
    np.round(img, out=img)
    img /= q
    return img
