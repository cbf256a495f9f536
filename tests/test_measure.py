"""cmrlib.measure pinned on shapes with analytic volumes and synthetic valve tracks with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from cmrlib import measure as M
from cmrlib.labels import LA, LV, MYO, RA, RV


def ellipsoid(spacing, semi, shape_mm=(80.0, 80.0, 80.0)) -> np.ndarray:
    """Boolean (Z,H,W) voxelised ellipsoid (voxel centres inside) with semi-axes (az, ay, ax) mm at the centre."""
    axes = [(np.arange(int(round(L / s))) + 0.5) * s - L / 2 for L, s in zip(shape_mm, spacing)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return (z / semi[0]) ** 2 + (y / semi[1]) ** 2 + (x / semi[2]) ** 2 <= 1


def ellipse(spacing, a, b, angle_deg=0.0, shape_mm=(120.0, 120.0), centre_mm=(60.0, 60.0)) -> np.ndarray:
    """Boolean (H,W) rasterised ellipse with semi-axes a (along the rotated x axis) and b, in mm."""
    sy, sx = spacing
    y, x = np.meshgrid(np.arange(int(shape_mm[0] / sy)) * sy, np.arange(int(shape_mm[1] / sx)) * sx, indexing="ij")
    t = np.deg2rad(angle_deg)
    dx, dy = x - centre_mm[1], y - centre_mm[0]
    u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
    return (u / a) ** 2 + (v / b) ** 2 <= 1


# ------------------------------------------------------------------ volumes


@pytest.mark.parametrize("spacing,tol", [((2.0, 2.0, 2.0), 0.03), ((1.0, 1.0, 1.0), 0.01), ((2.0, 0.5, 0.5), 0.015)])
def test_simpson_ellipsoid(spacing, tol):
    semi = (30.0, 20.0, 15.0)
    v = M.simpson_volume(ellipsoid(spacing, semi).astype(np.uint8) * LV, spacing, LV)
    exact = 4 / 3 * np.pi * np.prod(semi) / 1000
    assert abs(v - exact) / exact < tol


def test_simpson_error_shrinks_with_resolution():
    semi = (30.0, 20.0, 15.0)
    exact = 4 / 3 * np.pi * np.prod(semi) / 1000
    errs = [abs(M.simpson_volume(ellipsoid((s, s, s), semi), (s, s, s), 1) - exact) for s in (4.0, 2.0, 1.0)]
    assert errs[0] > errs[2] and errs[1] > errs[2]


@pytest.mark.parametrize("sz", [5.0, 8.0, 10.0])
def test_simpson_cylinder_slice_spacing(sz):
    """A cylinder along z: slice spacing enters linearly, the in-plane disc area converges to pi r^2."""
    r, nz = 25.0, 10
    disc = ellipse((0.5, 0.5), r, r, shape_mm=(60.0, 60.0), centre_mm=(30.0, 30.0))
    vol = np.repeat(disc[None], nz, axis=0).astype(np.uint8) * MYO
    v = M.simpson_volume(vol, (sz, 0.5, 0.5), MYO)
    exact = np.pi * r**2 * nz * sz / 1000
    assert abs(v - exact) / exact < 0.01
    assert M.simpson_volume(vol, (sz, 0.5, 0.5), LV) == 0.0


def test_label_tuple_and_curve_shapes():
    lab = np.zeros((3, 2, 4, 4), np.uint8)
    lab[:, :, :2, :2] = LV
    lab[:, :, 2:, 2:] = MYO
    lab[1, 0] = 0
    sp = (10.0, 1.0, 2.0)
    assert M.simpson_volume(lab[0], sp, (LV, MYO)) == pytest.approx(2 * 8 * 20 / 1000)
    np.testing.assert_allclose(M.volume_curve(lab, sp, LV), [0.16, 0.08, 0.16])
    np.testing.assert_allclose(M.area_curve(lab[:, 0], sp[1:], MYO), [8.0, 0.0, 8.0])
    np.testing.assert_allclose(M.volume_curve(lab[:, 0], sp[1:], MYO), M.area_curve(lab[:, 0], sp[1:], MYO))
    with pytest.raises(M.MeasureError, match="spacing"):
        M.simpson_volume(lab[0], (1.0, 1.0), LV)


def test_es_overshoot_counts_only_the_slices_where_the_cavity_outgrows_its_ed_area():
    ed, es = np.zeros((3, 6, 6), np.uint8), np.zeros((3, 6, 6), np.uint8)
    ed[:, :4, :4] = LV  # 16 px a slice at ED
    es[0, :2, :2] = LV  # contracts on slices 0 and 1 ...
    es[1, :3, :3] = LV
    es[2, :5, :5] = LV  # ... and outgrows ED on slice 2 by 9 px
    sp = (8.0, 1.5, 1.5)
    assert M.es_overshoot(ed, es, sp) == pytest.approx(9 * 8.0 * 1.5 * 1.5 / 1000)
    assert M.es_overshoot(ed, ed, sp) == 0.0 == M.es_overshoot(ed, es, sp, RV)  # no RV drawn: nothing outgrows
    with pytest.raises(M.MeasureError, match="one .Z,H,W. shape"):
        M.es_overshoot(ed, es[:2], sp)


def test_ed_es_and_global_function():
    assert M.ed_es_from_curve([3.0, 5.0, 9.0, 4.0, 2.0, 6.0]) == (2, 4)
    e = M.ejection(150.0, 60.0)
    assert e == {"sv": 90.0, "ef": 60.0}
    np.testing.assert_allclose(M.ejection(np.array([100.0, 0.0]), np.array([40.0, 0.0]))["ef"], [60.0, np.nan])
    assert M.lv_mass(100.0) == pytest.approx(105.0)
    assert M.cardiac_output(80.0, 60.0) == pytest.approx(4.8)
    assert M.bsa_mosteller(180.0, 80.0) == pytest.approx(np.sqrt(180 * 80 / 3600))
    assert M.index_bsa(100.0, 2.0) == 50.0 and np.isnan(M.index_bsa(100.0, 0.0))


# ------------------------------------------------------------------ area-length


def test_area_length_formulas_match_prolate_ellipsoid_exactly():
    a, b, c = 30.0, 18.0, 14.0  # long semi-axis a
    A1, A2, L = np.pi * a * b, np.pi * a * c, 2 * a
    assert M.area_length_biplane(A1, A2, L) == pytest.approx(4 / 3 * np.pi * a * b * c / 1000, rel=1e-12)
    assert M.area_length_single(A1, L) == pytest.approx(4 / 3 * np.pi * a * b * b / 1000, rel=1e-12)
    # a pair of lengths uses the shorter one
    assert M.area_length_biplane(A1, A2, (L, L + 10)) == pytest.approx(M.area_length_biplane(A1, A2, L))


@pytest.mark.parametrize("spacing,angle,tol", [((1.0, 1.0), 0.0, 0.03), ((0.5, 0.5), 30.0, 0.015),
                                               ((0.5, 0.8), -60.0, 0.02), ((0.25, 0.25), 15.0, 0.008)])
def test_area_length_from_rasterised_ellipses(spacing, angle, tol):
    a, b, c = 30.0, 18.0, 14.0
    m1, m2 = ellipse(spacing, a, b, angle) * LA, ellipse(spacing, a, c, angle + 40) * LA
    A1, A2 = M.chamber_area(m1, spacing, LA), M.chamber_area(m2, spacing, LA)
    L1, L2 = M.chamber_length(m1, spacing, LA), M.chamber_length(m2, spacing, LA)
    assert abs(A1 - np.pi * a * b) / (np.pi * a * b) < tol
    assert abs(L1 - 2 * a) / (2 * a) < tol and abs(L2 - 2 * a) / (2 * a) < tol
    v = M.area_length_biplane(A1, A2, (L1, L2))
    assert abs(v - 4 / 3 * np.pi * a * b * c / 1000) / (4 / 3 * np.pi * a * b * c / 1000) < 3 * tol


def test_chamber_length_from_base_points():
    sp, a, b = (0.5, 0.5), 30.0, 18.0
    m = ellipse(sp, a, b, 90.0)  # long axis vertical (rows), centre (60, 60) mm
    base = np.array([[60.0 - 8, 60.0 - a], [60.0 + 8, 60.0 - a]]) / 0.5  # (x, y) pixels on the top end
    assert M.chamber_length(m, sp, 1, base) == pytest.approx(2 * a, rel=0.01)
    assert np.isnan(M.chamber_length(m, sp, 2))


# ------------------------------------------------------------------ SAX stack and Table 1


def box_cine(nt=8, nz=6, rv_scale=0.8):
    """A (T,Z,H,W) stack with box-shaped LV/MYO/RV whose voxel counts (hence volumes) are known exactly."""
    lab = np.zeros((nt, nz, 40, 48), np.uint8)
    widths = (np.round(12 + 6 * np.cos(2 * np.pi * (np.arange(nt) - 2) / nt))).astype(int)  # ED at frame 2
    for t, w in enumerate(widths):
        lab[t, 1:5, 4:30, 2:2 + w + 4] = MYO
        lab[t, 1:5, 6:28, 4:4 + w] = LV
        lab[t, 1:5, 6:28, 30:30 + int(round(w * rv_scale))] = RV
    return lab, widths


def test_sax_measures_exact_on_boxes():
    lab, w = box_cine()
    sp = (8.0, 1.5, 1.5)
    vox = np.prod(sp) / 1000
    out = M.sax_measures(lab, sp, hr_bpm=70, bsa=1.9)
    ed, es = int(np.argmax(w)), int(np.argmin(w))
    assert (out["ED"], out["ES"]) == (ed, es)
    lvedv, lvesv = 4 * 22 * w[ed] * vox, 4 * 22 * w[es] * vox
    assert out["LVEDV"] == pytest.approx(lvedv) and out["LVESV"] == pytest.approx(lvesv)
    assert out["LVEF"] == pytest.approx(100 * (lvedv - lvesv) / lvedv)
    assert out["RVEDV"] == pytest.approx(4 * 22 * round(w[ed] * 0.8) * vox)
    myo = (4 * 26 * (w[ed] + 4) - 4 * 22 * w[ed]) * vox
    assert out["LVM"] == pytest.approx(1.05 * myo)
    assert out["LVCO"] == pytest.approx((lvedv - lvesv) * 70 / 1000)
    assert out["LVEDVi"] == pytest.approx(lvedv / 1.9) and out["LVMi"] == pytest.approx(1.05 * myo / 1.9)
    # explicit frames (ACDC-style: only ED and ES segmented)
    two = M.sax_measures(lab[[ed, es]], sp, ed=0, es=1)
    assert two["LVEDV"] == pytest.approx(lvedv) and "LVEDVi" not in two


def test_la_ra_measures_and_table1():
    sp = (0.5, 0.5)
    semis = [(30, 18, 14), (27, 15, 12), (24, 12, 10)]  # LA shrinks over the cycle
    l2 = np.stack([ellipse(sp, a, b, 90) * LA for a, b, _ in semis]).astype(np.uint8)
    l4 = np.stack([ellipse(sp, a, c, 90) * LA + ellipse(sp, a, c, 90, centre_mm=(60.0, 20.0)) * RA
                   for a, _, c in semis]).astype(np.uint8)
    la = M.la_measures(l2, sp, l4, sp)
    exact = [4 / 3 * np.pi * a * b * c / 1000 for a, b, c in semis]
    assert la["LAVmax"] == pytest.approx(exact[0], rel=0.03) and la["LAVmin"] == pytest.approx(exact[-1], rel=0.03)
    assert la["LAEF"] == pytest.approx(100 * (exact[0] - exact[-1]) / exact[0], rel=0.05)
    ra = M.ra_measures(l4, sp)
    assert ra["RAVmax"] == pytest.approx(4 / 3 * np.pi * 30 * 14 * 14 / 1000, rel=0.03)
    lab, _ = box_cine()
    row = M.table1(lab, (8.0, 1.5, 1.5), l2, sp, l4, sp, height_cm=170, weight_kg=68, hr_bpm=60)
    assert row["BSA"] == pytest.approx(np.sqrt(170 * 68 / 3600))
    for k in ("LVEDV", "RVEF", "LVM", "LVCO", "LAVmax", "LAEF", "RAVmin"):
        assert k in row and k in M.UNITS
    assert row["LAVmaxi"] == pytest.approx(la["LAVmax"] / row["BSA"])


def test_la_views_with_unequal_frame_counts():
    sp = (1.0, 1.0)
    l4 = np.stack([ellipse(sp, 25 + 5 * np.cos(2 * np.pi * t / 20), 15, 90) for t in range(20)]).astype(np.uint8) * LA
    l2 = l4[::2]  # 10 frames over the same cycle
    v = M.atrial_volume_curve(l2, sp, l4, sp)
    assert v.shape == (20,)
    np.testing.assert_allclose(v[::2], M.atrial_volume_curve(l2, sp, l4[::2], sp))  # 2CH frames land on even 4CH ones
    assert abs(np.argmax(v) - 0) <= 1 and abs(np.argmin(v) - 10) <= 1


# ------------------------------------------------------------------ mitral valve


def lobe(t, t0, T, amp):
    """Half-sine velocity lobe (cm/s) over [t0, t0+T] and its time integral in mm."""
    inside = (t >= t0) & (t <= t0 + T)
    v = np.where(inside, amp * np.sin(np.pi * (t - t0) / T), 0.0)
    ph = np.clip((t - t0) / T, 0, 1)
    d = amp * T / np.pi * (1 - np.cos(np.pi * ph)) * 0.01  # cm/s x ms -> mm
    return v, d


def valve_cycle(n_frames, a_amp=8.0, period=850.0):
    """Analytic valve motion: s' lobe toward the apex, e' and a' lobes away; net displacement zero over the cycle."""
    t = np.arange(n_frames) * period / n_frames
    s_amp, ts = 8.0, 350.0
    te, ta = 200.0, 100.0
    e_amp = (s_amp * ts - a_amp * ta) / te
    vs, ds = lobe(t, 0, ts, s_amp)
    ve, de = lobe(t, ts, te, -e_amp)
    va, da = lobe(t, ts + te + 150, ta, -a_amp)
    return t, ds + de + da, vs + ve + va, dict(s=s_amp, e=e_amp, a=a_amp, mapse=s_amp * ts * 2 / np.pi * 0.01)


def track(disp_mm, spacing=(0.8, 1.2), angle_deg=20.0, apex_side=1.0):
    """(T,2,2) pixel points of a valve line that moves perpendicularly by disp_mm (toward the apex side)."""
    sy, sx = spacing
    t = np.deg2rad(angle_deg)
    u, n = np.array([np.cos(t), np.sin(t)]), apex_side * np.array([-np.sin(t), np.cos(t)])
    c = np.array([60.0, 50.0])
    base = np.stack([c - 12 * u, c + 12 * u])  # mm
    slide = 0.5 * np.sin(np.linspace(0, 2 * np.pi, len(disp_mm)))  # motion along the line does not count
    pts = base[None] + disp_mm[:, None, None] * n + slide[:, None, None] * u
    apex = c + 80 * n
    return pts / (sx, sy), apex / (sx, sy)


@pytest.mark.parametrize("n_frames,tol", [(50, 0.08), (100, 0.03)])
@pytest.mark.parametrize("angle,side,start", [(0.0, 1.0, 0), (20.0, -1.0, 0), (-35.0, 1.0, 17), (70.0, -1.0, 33)])
def test_valve_track_displacement_mapse_and_peaks(n_frames, tol, angle, side, start):
    t, d, v, truth = valve_cycle(n_frames)
    sp = (0.8, 1.2)
    pts, apex = track(d, sp, angle, side)
    k = start * n_frames // 50
    pts = np.roll(pts, -k, axis=0)  # the cine starts mid-cycle: ED is at frame (-k) % T
    ed = (-k) % n_frames
    for a in (apex, None):
        disp = M.mv_displacement(pts, sp, ed, apex=a)
        np.testing.assert_allclose(disp, np.roll(d, -k), atol=1e-9)
    assert M.mapse(disp) == pytest.approx(d.max())
    assert abs(M.mapse(disp) - truth["mapse"]) / truth["mapse"] < tol
    vel = M.mv_velocity(disp, t[1] - t[0])
    pk = M.velocity_peaks(vel, ed=ed)
    for key, name in (("s_prime", "s"), ("e_prime", "e"), ("a_prime", "a")):
        assert abs(pk[key] - truth[name]) / truth[name] < tol, (key, pk[key], truth[name])


def test_velocity_units_and_smoothing():
    t, d, v, _ = valve_cycle(200)
    dt = t[1] - t[0]
    np.testing.assert_allclose(M.mv_velocity(d, dt), v, atol=0.25)  # kinks at lobe edges; mm over ms -> cm/s
    noisy = d + np.random.default_rng(0).normal(0, 0.05, d.size)
    err_raw = np.abs(M.mv_velocity(noisy, dt) - v).mean()
    err_sg = np.abs(M.mv_velocity(noisy, dt, window=15) - v).mean()
    assert err_sg < err_raw / 2


def test_no_atrial_kick_gives_nan_a_prime():
    t, d, v, truth = valve_cycle(60, a_amp=0.0)
    pk = M.velocity_peaks(M.mv_velocity(d, t[1] - t[0]), ed=0)
    assert np.isnan(pk["a_prime"]) and pk["e_prime"] == pytest.approx(truth["e"], rel=0.05)


def test_mv_measures_and_view_average():
    t, d, _, truth = valve_cycle(50)
    pts, apex = track(d)
    out = M.mv_measures(pts, (0.8, 1.2), 0, t[1] - t[0], apex)
    assert out["MAPSE"] == pytest.approx(d.max()) and out["displacement"].shape == (50,)
    avg = M.average_views(d, 0.5 * d[::2])
    assert avg.shape == (50,) and avg.max() == pytest.approx(0.75 * d.max(), rel=0.02)
    with pytest.raises(M.MeasureError, match="points"):
        M.mv_displacement(np.zeros((5, 2)), (1, 1), 0)


@pytest.mark.parametrize("curve, tol, expected", [
    ([5, 9, 9, 9, 4, 2, 2, 3], 0.0, (1, 5)),          # exact ties: first occurrence (argmax/argmin)
    ([5, 9, 9, 9, 4, 2, 2, 3], 0.01, (3, 5)),         # ED: last frame before contraction; ES: first of the minimum
    ([9, 4, 2, 2.001, 3, 8, 9, 9], 0.01, (0, 2)),     # the ED plateau wraps round the cycle start
    ([2.0, 3, 9, 8.99, 4, 2.005], 0.01, (3, 5)),     # the ES plateau wraps: first frame is the last one
])
def test_ed_es_plateaus(curve, tol, expected):
    assert M.ed_es_from_curve(curve, tol=tol) == expected


def test_table1_segments_a_sax_stack_at_its_recorded_ed_and_es_only(tmp_path):
    """The forest's and HeartMAE's expert measures need a SAX stack's ED and ES frames, a long-axis cine whole."""
    from cmrlib.phantom import make_cohort

    store = make_cohort(tmp_path / "c", n=1, seed=2, views=("SAX", "4CH"), workers=1, progress=False, n_frames=8,
                        matrix=64, pixel_mm=3.0)
    sax_id, lax_id = (store.select(view=v)[0] for v in ("SAX", "4CH"))
    a = store.attrs(sax_id)
    assert M.table1_frames(store, sax_id) == [a["ed"], a["es"]] and M.table1_frames(store, lax_id) is None
    two = store.read(sax_id, M.table1_frames(store, sax_id))
    assert (two.ed, two.es, two.n_frames) == (0, 1, 2)
    whole = store.read(sax_id)
    row = M.subject_measures(store, {sax_id: two.labels, lax_id: store.read(lax_id).labels}).iloc[0]
    expect = M.sax_measures(whole.labels, whole.spacing, ed=a["ed"], es=a["es"])
    assert row["LVEDV_auto"] == pytest.approx(expect["LVEDV"]) and row["LVEF_auto"] == pytest.approx(expect["LVEF"])
    assert np.isfinite(row["LAVmax_auto"])
