"""What a patient report may state plainly: every number sorted into one tier, never summed. *Not measurable*
(the cines cannot give it: no frame times for a velocity, two frames for ED/ES); *withheld* (outside human bounds,
a broken identity, implausible spacing: a measurement failure); *uncertain* (its calibrated interval crosses a
clinical cut-off); and, apart from these, *abnormal* physiology (outside the published normal range for the
patient's sex).

`check(table, ...)` takes the report's measures (method, measure, value, unit, cine, and `low`/`high` where a
calibrated interval exists) and returns them with `tier`, `flag` (why), `normal`, `z` and `vs_normal`, plus the
measures the given views cannot show. The LV-RV stroke-volume gap is a measure (it may be a regurgitant volume),
never a flag: ACDC's own manual reference breaks a 15 % rule in 42 of its 65 cines.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd

# Any adult human heart, disease included (a value outside is a measurement failure, not a finding).
BOUNDS = {"LVEDV": (30, 700), "LVESV": (5, 650), "LVSV": (10, 250), "LVEF": (5, 90), "LVM": (30, 500),
          "LVCO": (1, 15), "RVEDV": (30, 700), "RVESV": (5, 650), "RVSV": (10, 250), "RVEF": (5, 90),
          "LAVmax": (10, 400), "LAVmin": (3, 350), "LASV": (2, 150), "LAEF": (3, 90),
          "RAVmax": (10, 400), "RAVmin": (3, 350), "RASV": (2, 150), "RAEF": (3, 90),
          "MAPSE": (2, 25), "TAPSE": (5, 40), "s_prime": (2, 20), "e_prime": (1.5, 25), "a_prime": (1.5, 25),
          "age": (18, 110), "BMI": (12, 70), "SBP": (60, 260), "DBP": (30, 160)}
BSA_RANGE = (1.2, 2.6)  # m²: an indexed measure's bounds are its absolute bounds over this range
NOT_MEASURABLE, WITHHELD, UNCERTAIN = "not measurable", "withheld", "uncertain"
TIERS = (NOT_MEASURABLE, WITHHELD, UNCERTAIN)  # measurement tiers, the first that applies; '' for a sound number
ABNORMAL = ("below", "above")  # a sound or uncertain number's place against the normal range that makes it abnormal
CUTOFFS = {"LVEF": (35.0, 40.0, 50.0)}  # %: device therapy (35), HFrEF (40), HFmrEF (50) decisions
EF_WIDTH = 10.0  # points: an EF whose interval reaches further than this either side is uncertain
SIZE_WIDTH = 0.25  # a volume or mass whose interval reaches further than this share of it either side is uncertain
SIZE_UNITS = ("mL", "g", "mL/m²", "g/m²")
SYSTOLE = (0.20, 0.55)  # share of the cycle from ED to ES (cyclic): outside it, ED and ES are withheld
VIEWS_APART = 0.15  # share of the cycle: one method's ED (or ES) of two views further apart is withheld in both
MIN_CYCLE = 10  # frames: fewer, and a cine's ED/ES are annotated picks (ACDC's two-frame stacks), not a cycle's
CANNOT_EXIST = ("frames", "timing")  # input-flag kinds whose spoiled numbers cannot exist from these cines
TIER_KEYS = ("withheld", "uncertain", "abnormal", "not_measurable")  # `tier_counts`' keys, report.json's too
SV_GAP = "LVSV - RVSV"  # the stroke-volume gap, reported as a measure
DERIVED = {f"{c}{m}": (f"{c}EDV", f"{c}ESV") for c in ("LV", "RV") for m in ("SV", "EF")}  # computed from parts
# A cavity contracts: in the manual masks of ACDC's 99 exams the LV at ES reaches beyond its ED area, slice by slice,
# by at most 3 % of LVESV (notebook 01 prints it); a segmentation beyond twice that has failed at ES.
ES_OVERSHOOT = 0.06
ES_READ = ("LVESV", "LVSV", "LVEF", "LVCO")  # the LV numbers read from the ES frame's cavity (and their indexed forms)

# The views a measure is read from: from other views a method can only guess it.
NEEDS_VIEWS = {"LA": ("2CH", "4CH"), "RA": ("4CH",), "MAPSE": ("2CH", "4CH"), "s_prime": ("2CH", "4CH"),
               "e_prime": ("2CH", "4CH"), "a_prime": ("2CH", "4CH"), "TAPSE": ("4CH",)}

# Normal ranges: mean and SD by sex (normal = mean ± 1.96 SD), each with its source. UK Biobank (Petersen SE et al.,
# J Cardiovasc Magn Reson 2017;19:18): 804 healthy Caucasians aged 45-74, 1.5 T SSFP, papillary muscles in the LV
# volume; all ages together (the paper's age bands are not held here). LV mass is held indexed only.
UKB = "petersen2017"
REFERENCE = {"LVEDV": {"male": (166.0, 32.0), "female": (124.0, 21.0)},
             "LVESV": {"male": (69.0, 16.0), "female": (49.0, 11.0)},
             "LVSV": {"male": (96.0, 20.0), "female": (75.0, 14.0)},
             "LVEF": {"male": (58.0, 5.0), "female": (61.0, 5.0)},
             "LVMi": {"male": (53.0, 9.0), "female": (42.0, 7.0)}}
REFERENCE_OF = {m: UKB for m in REFERENCE}
# Clinical grades, whatever the sex: (grade, its upper limit, whether the limit belongs to it) from the lowest;
# above the last one is normal. LVEF: the heart-failure categories of the ESC 2021 guidelines (<= 40 reduced,
# 41-49 mildly reduced); RVEF: the RV-function criteria of the 2010 ARVC Task Force (<= 40, 40-45).
GRADES = {"LVEF": (("reduced", 40.0, True), ("mildly reduced", 50.0, False)),
          "RVEF": (("reduced", 40.0, True), ("mildly reduced", 45.0, True))}
GRADE_OF = {"LVEF": "esc2021", "RVEF": "arvc2010"}
NORMAL_GRADE = "normal"
SOURCES = {
    UKB: ("Petersen SE, Aung N, Sanghvi MM, et al. Reference ranges for cardiac structure and function using CMR in "
          "Caucasians from the UK Biobank population cohort. J Cardiovasc Magn Reson 2017;19:18 (healthy adults "
          "aged 45-74; normal = mean ± 1.96 SD)"),
    "esc2021": ("McDonagh TA, Metra M, Adamo M, et al. 2021 ESC Guidelines for the diagnosis and treatment of acute "
                "and chronic heart failure. Eur Heart J 2021;42:3599-3726 (LVEF < 40 reduced, 40-49 mildly reduced)"),
    "arvc2010": ("Marcus FI, McKenna WJ, Sherrill D, et al. Diagnosis of arrhythmogenic right ventricular "
                 "cardiomyopathy/dysplasia: proposed modification of the Task Force Criteria. Circulation "
                 "2010;121:1533-41 (RVEF <= 40 and 40-45 % as its CMR criteria)")}
REFERENCE_SOURCE = "; ".join(SOURCES.values())
Z_NORMAL = 1.96
SEXES = ("male", "female")
SPOILS = dict(frames={"frame", "cm/s", "L/min", "L/min/m²", "bpm"},  # the units a metadata flag makes untrustworthy
              timing={"cm/s", "L/min", "L/min/m²", "bpm"},
              space={"mL", "g", "mm", "mL/m²", "g/m²", "cm/s", "L/min", "L/min/m²"})


@dataclass(frozen=True)
class Rule:
    """A consistency rule over one method's measures: `holds(values) -> bool` on the named measures."""

    text: str
    measures: tuple[str, ...]
    holds: Callable[..., bool]


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol


RULES = tuple(
    [Rule(f"{c}EDV >= {c}ESV", (f"{c}EDV", f"{c}ESV"), lambda ed, es: ed >= es) for c in ("LV", "RV")]
    + [Rule(f"{c}Vmax >= {c}Vmin", (f"{c}Vmax", f"{c}Vmin"), lambda hi, lo: hi >= lo) for c in ("LA", "RA")]
    + [Rule(f"{c}EDV - {c}ESV = {c}SV", (f"{c}EDV", f"{c}ESV", f"{c}SV"),
            lambda ed, es, sv: _close(ed - es, sv, max(2.0, 0.02 * abs(ed)))) for c in ("LV", "RV")]
    + [Rule(f"{c}EF = {c}SV / {c}EDV", (f"{c}EF", f"{c}SV", f"{c}EDV"),
            lambda ef, sv, ed: ed > 0 and _close(ef, 100 * sv / ed, 2.0)) for c in ("LV", "RV")])


def bounds(measure: str, unit: str) -> tuple[float, float] | None:
    """The human bounds of a measure (indexed ones from the absolute bounds over BSA_RANGE; probabilities 0-1)."""
    if unit == "probability":
        return (0.0, 1.0)
    if measure in BOUNDS:
        return BOUNDS[measure]
    if measure.endswith("i") and measure[:-1] in BOUNDS and "/m²" in unit:
        lo, hi = BOUNDS[measure[:-1]]
        return (lo / BSA_RANGE[1], hi / BSA_RANGE[0])
    return None


def needs_views(measure: str) -> tuple[str, ...]:
    """The views a measure must be read from (empty: any)."""
    return next((v for k, v in NEEDS_VIEWS.items() if measure.startswith(k)), ())


def measurable(measure: str, views: Iterable[str]) -> bool:
    """Whether these views can show a measure at all (LA volume is not in a SAX stack)."""
    need = needs_views(measure)
    return not need or bool(set(need) & set(views))


def frame_of(measure: str) -> str | None:
    """'ED (SAX)' -> 'ED'; None for a measure that is not a frame."""
    head = measure.split(" (")[0]
    return head if head in ("ED", "ES") and measure.endswith(")") else None


def views_of(cine: str) -> set[str]:
    """The views a measure was read from: its `cine` field holds cine ids ('patient_SAX') or views, joined by '+'."""
    return {part.rsplit("_", 1)[-1] for part in str(cine).split("+") if part}


def _value_reasons(row, n_frames: dict[str, int]) -> dict[str, list[str]]:
    """tier -> why, for one number on its own: not measured, outside human bounds, a frame outside its cine, an
    interval across a clinical cut-off."""
    v = row.value
    if v is None or not np.isfinite(v):
        return {NOT_MEASURABLE: ["could not be measured from these cines"]}
    if row.unit == "frame":
        n = next((n_frames[v] for v in views_of(row.cine) if v in n_frames), None)
        return {} if n is None or 0 <= v < n else {WITHHELD: [f"frame {v:g} is outside the cine's {n} frames"]}
    b = bounds(row.measure, row.unit)
    if b and not _within(row.measure, v, row.unit):
        return {WITHHELD: [outside_words(b, row.unit)]}
    lo, hi = getattr(row, "low", np.nan), getattr(row, "high", np.nan)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return {}
    crossed = [c for c in CUTOFFS.get(row.measure, ()) if lo < c < hi]
    why = [f"its interval {lo:.3g}-{hi:.3g} crosses the {', '.join(f'{c:g}' for c in crossed)} "
           f"{row.unit} cut-off".replace("  ", " ")] if crossed else []
    why += [w] if (w := _too_wide(row.measure, v, lo, hi, row.unit)) else []
    return {UNCERTAIN: why} if why else {}


def _too_wide(measure: str, v: float, lo: float, hi: float, unit: str) -> str | None:
    """Why an interval is too wide to mean anything clinically (EF beyond ±10 points, a volume or mass beyond
    ±25 %), None when it is not."""
    half = (hi - lo) / 2
    if unit == "%" and measure.endswith("EF") and half > EF_WIDTH:
        return f"its interval {lo:.3g}-{hi:.3g} is wider than ±{EF_WIDTH:g} points"
    if unit in SIZE_UNITS and half > SIZE_WIDTH * abs(v):
        return f"its interval {lo:.3g}-{hi:.3g} is wider than ±{SIZE_WIDTH:.0%}"
    return None


def _view_of_frame(measure: str) -> str:
    """'ED (4CH)' -> '4CH'."""
    return measure.split(" (", 1)[1].rstrip(")")


def _cyclic(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def frame_flags(tab: pd.DataFrame, n_frames: dict[str, int]) -> dict[int, list[str]]:
    """row -> why its ED/ES frame is withheld: systole outside 20-55 % of the cycle, or two views of one method
    (each with a plausible systole) disagreeing by more than 15 % of it; then each LV or RV number read at a
    withheld frame (cines of 10 frames or more: fewer hold annotated picks, not a cycle)."""
    out: dict[int, list[str]] = {}
    for _, g in tab.groupby("method"):
        at: dict[str, dict[str, tuple[int, float, int]]] = {}
        for i, r in g.iterrows():
            phase, n = frame_of(r.measure), 0
            if phase and r.unit == "frame" and np.isfinite(r.value):
                n = n_frames.get(_view_of_frame(r.measure), 0)
            if n >= MIN_CYCLE:
                at.setdefault(_view_of_frame(r.measure), {})[phase] = (i, float(r.value), n)
        for v, d in at.items():
            if {"ED", "ES"} <= set(d):
                (i, ed, n), (j, es, _) = d["ED"], d["ES"]
                share = ((es - ed) % n) / n
                if not SYSTOLE[0] <= share <= SYSTOLE[1]:
                    why = (f"systole from ED (frame {ed:g}) to ES (frame {es:g}) spans {100 * share:.0f} % of the "
                           f"{n}-frame cycle, outside {100 * SYSTOLE[0]:.0f}-{100 * SYSTOLE[1]:.0f} %")
                    out.setdefault(i, []).append(why)
                    out.setdefault(j, []).append(why)
        sound = {v: d for v, d in sorted(at.items()) if not any(i in out for i, _, _ in d.values())}
        for phase in ("ED", "ES"):  # views whose own systole is plausible, against each other
            pos = {v: (d[phase][0], d[phase][1] / d[phase][2]) for v, d in sound.items() if phase in d}
            for a, b in ((a, b) for a in pos for b in pos if a < b):
                if (gap := _cyclic(pos[a][1], pos[b][1])) > VIEWS_APART:
                    why = (f"{phase} of the {a} and {b} cines lie {100 * gap:.0f} % of the cycle apart (more than "
                           f"{100 * VIEWS_APART:.0f} %)")
                    out.setdefault(pos[a][0], []).append(why)
                    out.setdefault(pos[b][0], []).append(why)
        bad = {_view_of_frame(tab.measure[i]) for i in out if i in g.index}
        for i, r in g.iterrows():
            if r.unit != "frame" and r.measure[:2] in ("LV", "RV") and (at_bad := sorted(views_of(r.cine) & bad)):
                out.setdefault(i, []).append(f"read at withheld ED/ES frames ({', '.join(at_bad)})")
    return out


def overshoot_reason(overshoot_ml: float, esv_ml: float) -> str:
    """Why the LV numbers read at ES are withheld ('' when they are not): the segmented cavity at ES outgrows its
    ED extent (`measure.es_overshoot`) by more than `ES_OVERSHOOT` of LVESV."""
    if not (np.isfinite(overshoot_ml) and np.isfinite(esv_ml)) or overshoot_ml <= ES_OVERSHOOT * esv_ml:
        return ""
    return (f"the LV cavity at ES outgrows its ED extent on some slices by {overshoot_ml:.1f} mL "
            f"({overshoot_ml / esv_ml:.1%} of LVESV; manual segmentations: at most {ES_OVERSHOOT / 2:.0%})")


def overshoot_reasons(overshoot_ml: pd.Series, esv_ml: pd.Series) -> pd.Series:
    """`overshoot_reason` row by row ('' where the ES numbers stand), indexed like `overshoot_ml`."""
    return pd.Series([overshoot_reason(g, esv) for g, esv in zip(overshoot_ml, esv_ml)], index=overshoot_ml.index,
                     dtype=object)


def reads_es(measure: str) -> bool:
    """Whether an LV number is read from the ES frame's cavity (LVESV, SV, EF, cardiac output; indexed or not)."""
    return measure.removesuffix("i") in ES_READ


def _rule_flags(values: dict[str, float]) -> dict[str, list[str]]:
    """measure -> the consistency rules its method's numbers break."""
    out: dict[str, list[str]] = {}
    for r in RULES:
        xs = [values.get(m) for m in r.measures]
        if any(x is None or not np.isfinite(x) for x in xs):
            continue
        if not r.holds(*xs):
            for m in r.measures:
                out.setdefault(m, []).append(f"breaks {r.text}")
    return out


def outside_words(b: tuple[float, float], unit: str) -> str:
    """Why a number outside its human bounds `b` is withheld."""
    return f"outside human range {b[0]:.3g}-{b[1]:.3g} {unit}".rstrip()


def _within(measure: str, value: float, unit: str) -> bool:
    """A finite number inside its human bounds."""
    b = bounds(measure, unit) or (-np.inf, np.inf)
    return value is not None and bool(np.isfinite(value)) and b[0] <= value <= b[1]


def outside_bounds(values: pd.Series, measure: str, unit: str) -> pd.Series:
    """Which numbers lie outside the measure's human bounds: measurement failures a report withholds (missing
    values are not)."""
    return values.notna() & ~values.map(lambda v: _within(measure, v, unit)).astype(bool)


WITHHELD_COLUMNS = ["subject", "measure", "value", "low", "high", "why"]  # a research table's withheld numbers


def withheld(columns: dict[str, pd.Series], units: dict[str, str]) -> pd.DataFrame:
    """Every number of a research table's measure columns (measure -> values by subject) that a report withholds,
    outside its human bounds (`outside_bounds`), with those bounds: one rule for the tables and the report."""
    rows = []
    for m, values in columns.items():
        if (b := bounds(m, units.get(m, ""))) is not None:
            bad = values[outside_bounds(values, m, units.get(m, ""))]
            why = outside_words(b, units.get(m, ""))
            rows += [dict(subject=s, measure=m, value=v, low=b[0], high=b[1], why=why) for s, v in bad.items()]
    return pd.DataFrame(rows, columns=WITHHELD_COLUMNS)


def with_sv_gap(tab: pd.DataFrame) -> pd.DataFrame:
    """The measures plus each method's LV minus RV stroke volume, where it gives both (a measure, not a flag)."""
    rows = []
    for method, g in tab.groupby("method", sort=False):
        sv = {m: r for m, r in zip(g.measure, g.itertuples()) if m in ("LVSV", "RVSV")}
        if len(sv) == 2 and all(_within(r.measure, r.value, r.unit) for r in sv.values()):
            rows.append(sv["LVSV"]._asdict() | dict(measure=SV_GAP, value=sv["LVSV"].value - sv["RVSV"].value,
                                                   low=np.nan, high=np.nan))
    rows = [{k: v for k, v in r.items() if k != "Index"} for r in rows]
    return pd.concat([tab, pd.DataFrame(rows)], ignore_index=True) if rows else tab


def grade(measure: str, value: float) -> str:
    """A measure's clinical grade whatever the sex ('reduced', 'mildly reduced', 'normal'); '' without one."""
    if measure not in GRADES or value is None or not np.isfinite(value):
        return ""
    for name, limit, closed in GRADES[measure]:
        if value < limit or (closed and value == limit):
            return name
    return NORMAL_GRADE


def _range(measure: str, sex: str) -> tuple[float, float]:
    mean, sd = REFERENCE[measure][sex]
    return mean - Z_NORMAL * sd, mean + Z_NORMAL * sd


def _place(value: float, lo: float, hi: float) -> str:
    return "below" if value < lo else "above" if value > hi else "within"


WORD = {"male": "a man", "female": "a woman"}


def reference(measure: str, value: float, sex: str | None) -> tuple[str, float, str]:
    """(normal range text, z, place) of a measure against its normal range. With the sex: 'below', 'within' or
    'above' and the z. Without it: a place every sex's range agrees on, else each sex's ('within for a woman, above
    for a man'), no z. ('', nan, '') where no range is held."""
    if measure not in REFERENCE or value is None or not np.isfinite(value):
        return "", math.nan, ""
    if sex in SEXES:
        mean, sd = REFERENCE[measure][sex]
        lo, hi = _range(measure, sex)
        return f"{lo:.0f}-{hi:.0f}", round((value - mean) / sd, 2), _place(value, lo, hi)  # the sex is never printed
    ranges = {s: _range(measure, s) for s in ("female", "male")}
    places = {s: _place(value, *r) for s, r in ranges.items()}
    text = ", ".join(f"{'women' if s == 'female' else 'men'} {lo:.0f}-{hi:.0f}" for s, (lo, hi) in ranges.items())
    if len(set(places.values())) == 1:
        return text, math.nan, next(iter(places.values()))
    return text, math.nan, ", ".join(f"{'normal' if p == 'within' else p} for {WORD[s]}" for s, p in places.items())


def abnormal(vs_normal: str, graded: str) -> bool:
    """Outside the normal range of every sex it may be, or a clinical grade other than normal."""
    return vs_normal in ABNORMAL or graded not in ("", NORMAL_GRADE)


def sources_of(measures: Iterable[str]) -> dict[str, str]:
    """measure -> the source of its normal range or grade, for report.json."""
    out = {}
    for m in measures:
        keys = [k for k in (REFERENCE_OF.get(m), GRADE_OF.get(m)) if k]
        if keys:
            out[m] = "; ".join(SOURCES[k] for k in keys)
    return out


def with_indexed(tab: pd.DataFrame, bsa: float | None) -> pd.DataFrame:
    """The measures plus their BSA-indexed forms (where a normal range exists and the method gave none)."""
    if not bsa or not len(tab):
        return tab
    rows = []
    for _, r in tab.iterrows():
        name = f"{r.measure}i"
        if name in REFERENCE and not ((tab.method == r.method) & (tab.measure == name)).any():
            rows.append(r.to_dict() | dict(measure=name, value=r.value / bsa, unit=f"{r.unit}/m²",
                                            **{k: r[k] / bsa for k in ("low", "high") if k in r}))
    return pd.concat([tab, pd.DataFrame(rows)], ignore_index=True) if rows else tab


def check(tab: pd.DataFrame, views: Iterable[str], n_frames: dict[str, int] | None = None, sex: str | None = None,
          bsa: float | None = None, input_flags: dict[str, dict[str, str]] | None = None,
          es_overshoot: dict[str, float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the measures with tier, flag, normal, z, vs_normal; the measures these views cannot show). A number from a
    cine whose metadata input QC flagged (`input_flags`: view -> {'frames'|'timing'|'space': why}) and that depends
    on it is not measurable (frames, timing) or withheld (space); `n_frames`: view -> frames; `es_overshoot`:
    method -> its LV segmentation's `measure.es_overshoot` (mL), which withholds the numbers read at ES beyond
    `ES_OVERSHOOT`."""
    n_frames, input_flags, views = dict(n_frames or {}), dict(input_flags or {}), set(views)
    es_overshoot = dict(es_overshoot or {})
    tab = tab.reset_index(drop=True)
    for c in ("low", "high"):
        tab[c] = tab[c].astype(float) if c in tab else np.nan
    tab = with_sv_gap(with_indexed(tab, bsa))
    shown = tab.measure.map(lambda m: measurable(m, views))
    hidden, tab = tab[~shown].reset_index(drop=True), tab[shown].reset_index(drop=True)
    reasons = {i: _value_reasons(r, n_frames) for i, r in enumerate(tab.itertuples())}
    for i, why in frame_flags(tab, n_frames).items():
        reasons[i].setdefault(WITHHELD, []).extend(why)
    for method, g in tab.groupby("method"):
        values = dict(zip(g.measure, g.value))
        broken = _rule_flags(values)
        grown = overshoot_reason(es_overshoot.get(method, np.nan), values.get("LVESV", np.nan))
        for i, r in g.iterrows():
            reasons[i].setdefault(WITHHELD, []).extend(broken.get(r.measure, []) + ([grown] if grown and reads_es(
                r.measure) else []))
    for i, r in tab.iterrows():
        for v in sorted(views_of(r.cine)):
            for kind, why in input_flags.get(v, {}).items():
                if why and r.unit in SPOILS[kind]:
                    reasons[i].setdefault(NOT_MEASURABLE if kind in CANNOT_EXIST else WITHHELD, []).append(
                        f"{v} cine: {why}")
    for method, g in tab.groupby("method"):
        idx = dict(zip(g.measure, g.index))
        for m, parts in DERIVED.items():
            bad = [q for q in parts if q in idx and reasons[idx[q]].get(WITHHELD)]
            if m in idx and bad:
                reasons[idx[m]].setdefault(WITHHELD, []).append(f"computed from withheld {', '.join(bad)}")
    tiers = [next((t for t in TIERS if reasons[i].get(t)), "") for i in range(len(tab))]
    refs = [reference(r.measure, r.value, sex) for r in tab.itertuples()]
    tab = tab.assign(tier=tiers, flag=["; ".join(reasons[i].get(t, [])) for i, t in enumerate(tiers)],
                     normal=[x[0] for x in refs], z=[x[1] for x in refs], vs_normal=[x[2] for x in refs],
                     grade=[grade(r.measure, r.value) for r in tab.itertuples()])
    return tab.assign(abnormal=[counts_abnormal(r, sex) for r in tab.itertuples()]), hidden


def counts_abnormal(row, sex: str | None) -> bool:
    """Whether a number counts as abnormal: sound and outside the normal range of every sex it may be (or graded
    below normal); an uncertain one only when its whole interval is (an RVEF of 30 whose interval reaches 49 may
    be normal); a withheld or unmeasurable one never."""
    if row.tier not in ("", UNCERTAIN) or not abnormal(row.vs_normal, row.grade):
        return False
    if row.tier == "":
        return True
    ends = [getattr(row, k, np.nan) for k in ("low", "high")]
    return all(np.isfinite(e) and abnormal(reference(row.measure, e, sex)[2], grade(row.measure, e)) for e in ends)


def tier_counts(tab: pd.DataFrame) -> dict[str, int]:
    """How many numbers are withheld, uncertain, abnormal (`counts_abnormal`) and not measurable: the report's
    headline, never summed."""
    return dict(withheld=int((tab.tier == WITHHELD).sum()), uncertain=int((tab.tier == UNCERTAIN).sum()),
                abnormal=int(tab.abnormal.astype(bool).sum()), not_measurable=int((tab.tier == NOT_MEASURABLE).sum()))
