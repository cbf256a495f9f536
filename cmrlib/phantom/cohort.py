"""Simulate subjects and write a synthetic cohort store (streamed, resumable, parallel, deterministic)."""
from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np

from ..dask_tasks import client, map_tasks
from ..measure import ed_es_from_curve
from ..record import Cine
from ..store import CohortStore, stratified_split
from ..utils import atomic_write_json
from . import signal as S
from .anatomy import Heart, truths
from .render import Geometry, heart_layer, label_lut, mitral_points
from .subjects import PhantomConfig, sample_recipe

SOURCE = "phantom"
VIEW_CODE = {"SAX": 1, "2CH": 2, "4CH": 4}
ED_ES_TOL = 0.005  # volume ties within 0.5 % of the stroke volume form a plateau (see measure.ed_es_from_curve)


def _recipe(subject, seed: int, config) -> dict:
    """A recipe from a subject index, a recipe dict or its JSON string."""
    if isinstance(subject, (int, np.integer)):
        return sample_recipe(int(subject), seed, config)
    return json.loads(subject) if isinstance(subject, str) else subject


def frame_phases(recipe: dict) -> np.ndarray:
    """Cardiac phase (fraction of RR from ED) of each frame: start offset plus trigger jitter."""
    a, tm = recipe["acquisition"], recipe["timing"]
    T = a["n_frames"]
    jit = np.random.default_rng([recipe["noise_seed"], 5]).normal(0, a["trigger_jitter_ms"], T) / tm["rr_ms"]
    jit[0] = 0.0
    return np.mod(a["start_phase"] + np.arange(T) / T + jit, 1.0)


def observers(truth: np.ndarray, plane, geom: Geometry, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Manual MV annotations: convention A (two observers) and B (systematic offset), time-correlated jitter."""
    T = truth.shape[0]
    px = plane.px
    ez = plane.to_pixel(geom.to_patient(np.array([[0, 0, 10.0]]))) - plane.to_pixel(geom.to_patient(np.zeros((1, 3))))
    up = (ez / (np.linalg.norm(ez) + 1e-9))[0]  # toward the atrium, in pixels
    mid = truth.mean(1, keepdims=True)
    out_dir = truth - mid
    out_dir /= np.linalg.norm(out_dir, axis=-1, keepdims=True) + 1e-9

    def jitter(sd_mm):
        w = rng.standard_normal((T + 8, 2, 2))
        k = np.exp(-0.5 * (np.arange(-4, 5) / 2.0) ** 2)
        sm = np.stack([np.convolve(w[:, i, j], k / np.sqrt((k ** 2).sum()), "valid")[:T]
                       for i in range(2) for j in range(2)], -1).reshape(T, 2, 2)
        return sm * sd_mm / px

    bias_a = rng.normal(0, 0.3, (1, 2, 2)) / px
    obs_a = truth + bias_a + jitter(0.7)
    obs_a2 = truth + rng.normal(0, 0.3, (1, 2, 2)) / px + jitter(0.7)
    obs_b = truth + (1.5 * up[None, None] + 1.0 * out_dir) / px + jitter(0.8)
    return dict(truth=truth, obsA=obs_a, obsA2=obs_a2, obsB=obs_b)


def _finish(img: np.ndarray, rng: np.random.Generator, acq: dict, noise_sigma: float) -> np.ndarray:
    """MR image formation on a contiguous (T, [Z,] H, W) float32 stack: phase-encode ghost, truncated k-space
    (sinc PSF with Gibbs ringing, correlated noise) and magnitude (Rician), quantised."""
    return S.kspace_rician(img, noise_sigma, acq["kspace"], acq["kspace"] * acq["pe_ratio"], rng, q=S.QUANT,
                           ghost=acq.get("ghost", 0.0))


def chamber_colours(tis: dict, geo: dict) -> np.ndarray:
    """Signal of LV blood, myocardium, RV blood and atrial blood. The RV pool sits between myocardium and LV blood
    (`rv_signal`: ACDC's (RV - myo) / (LV - myo) is 0.62, IQR 0.47-0.72: slower flow, trabeculae, partial volume);
    recipes without it keep the older 0.97 x blood."""
    b, m = tis["blood"], tis["myo"]
    k = geo.get("rv_signal")
    return np.array([b, m, b * 0.97 if k is None else m + k * (b - m), b * 0.95])


def simulate_subject(subject, seed: int = 0, config: PhantomConfig | dict | None = None,
                     views=("SAX", "2CH", "4CH")) -> dict[str, Cine]:
    """Render one subject (index, recipe dict or JSON) into canonical cines with labels, landmarks and truths."""
    recipe = _recipe(subject, seed, config)
    acq, cov, tm = recipe["acquisition"], recipe["covariates"], recipe["timing"]
    phases = frame_phases(recipe)
    heart = Heart(recipe, phases)
    geom = Geometry(heart, recipe)
    tis = S.tissue_signal(np.random.default_rng([recipe["noise_seed"], 1]), acq.get("tissue_spread", S.SPREAD))
    colours = chamber_colours(tis, recipe["geometry"])
    state = heart.state()
    T = len(phases)
    v_lv = heart.v_lv / 1e3
    ed, es = ed_es_from_curve(v_lv, tol=ED_ES_TOL)
    times = np.arange(T) * tm["rr_ms"] / T
    meta = dict(cov, **{k: v for k, v in recipe["conditions"].items()}, **truths(recipe),
                lv_volume_curve_ml=np.round(v_lv, 3).tolist(), rv_volume_curve_ml=np.round(heart.v_rv / 1e3, 3).tolist(),
                la_volume_curve_ml=np.round(heart.v_la / 1e3, 3).tolist(), phantom_seed=recipe["seed"],
                phantom_index=recipe["index"], recipe=json.dumps(recipe, sort_keys=True))
    sigma = 1.0 / acq["snr"]
    out = {}
    for view in views:
        rng = np.random.default_rng([recipe["noise_seed"], VIEW_CODE[view]])
        lut = label_lut(view)
        planes = geom.sax_planes() if view == "SAX" else [geom.lax_plane(view)]
        img = np.empty((T, len(planes)) + geom.shape, np.float32)
        lab = np.empty((T, len(planes)) + geom.shape, np.uint8)
        coil = S.bias_coeffs(rng)
        tex = S.Textures(rng, geom.shape, geom.px, len(planes))
        for k, p in enumerate(planes):
            heart_layer(geom, p, S.body_image(geom, p, tis, rng, tex), colours, lut, state, img[:, k], lab[:, k])
            img[:, k] *= S.bias_field(p.points(), acq["bias"], coil).reshape(geom.shape)
        if view == "SAX":
            spacing, lm = (acq["sax_spacing_mm"], geom.px, geom.px), {}
        else:
            img, lab = img[:, 0], lab[:, 0]
            spacing = (geom.px, geom.px)
            lm = observers(mitral_points(geom, planes[0], view), planes[0], geom, rng)
        img = _finish(img, rng, acq, sigma)
        out[view] = Cine(subject=recipe["subject"], view=view, pixels=img, spacing=spacing, frame_times=times,
                         labels=lab, landmarks=lm, ed=ed, es=es, source=SOURCE, meta=meta)
    return out


# ---------------------------------------------------------------------------------------------
def _strata(recipe: dict) -> str:
    c = recipe["conditions"]
    return c["condition"] + ("+MR" if c["mr_grade"] > 0 and c["condition"] != "MR" else "")


def _job(index: int, seed: int, cfg: dict, views: tuple, root: str) -> int:
    """Simulate one subject and write its cines (one task; returns the index)."""
    store = CohortStore(root)
    for cine in simulate_subject(index, seed, cfg, views).values():
        store.write(cine, overwrite=not store.intact(cine.cine_id))  # a damaged cine is written again
    return index


def make_cohort(out: str | Path, n: int = 24, seed: int = 0, views=("SAX", "2CH", "4CH"), n_frames=None,
                workers: int = 1, progress: bool = True, start: int = 0, scheduler=None, renew: bool = False,
                **config_overrides) -> CohortStore:
    """Write `n` phantom subjects (all views, labels, landmarks, truths) and a stratified split; resumes.

    workers / scheduler: one Dask task per subject (`cmrlib.dask_tasks.client`); workers=1 without a scheduler runs
    here. The cines are the same bit for bit either way (each subject's randomness comes from its index).
    start: index of the first subject, so a second store can continue a cohort with new subjects (an unlabelled
    pool beside notebook 00's cohort) under the same seed without repeating any. A folder holding a phantom of
    another recipe (seed, start, views, config) is refused (`CohortMismatch`), or with `renew` (a notebook's own
    derived cohort) emptied and made afresh; a folder of real cines is always refused."""
    cfg = PhantomConfig.make(config_overrides, n_frames=n_frames)
    cfg_d = cfg.record()
    views = tuple(views)
    bad = [v for v in views if v not in VIEW_CODE]
    if bad:
        raise ValueError(f"phantom renders views {tuple(VIEW_CODE)}; got {bad}")
    store = CohortStore(out)
    identity = dict(source=SOURCE, seed=seed, start=start, views=list(views), config=cfg_d)
    if renew and store.root.is_dir() and (store.identity() or {}).get("source") == SOURCE:
        if store.identity() != json.loads(json.dumps(identity, sort_keys=True)):
            shutil.rmtree(store.root)
    store.root.mkdir(parents=True, exist_ok=True)
    recipes = [sample_recipe(i, seed, cfg) for i in range(start, start + n)]
    job = partial(_job, seed=seed, cfg=cfg_d, views=views, root=str(store.root))
    with client(scheduler, workers) as c, store.writer():
        # the phantom's recipe is the cohort's identity: another seed, start or config into this folder is refused
        store.claim(identity)
        store.clean_temporaries()
        todo = [r["index"] for r in recipes if not all(store.intact(f"{r['subject']}_{v}") for v in views)]
        for i, _, err in map_tasks(job, todo, c, desc="phantom", unit="subject", progress=progress):
            if err is not None:
                raise RuntimeError(f"phantom subject {i} could not be simulated: {err}") from err
        store.write_splits(stratified_split({r["subject"]: _strata(r) for r in recipes}, seed))
        atomic_write_json(store.own(store.root / "phantom.json"),
                          dict(n=n, seed=seed, start=start, views=list(views), config=cfg_d))
    store.manifest()
    return store

