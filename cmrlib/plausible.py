"""What a patient report may state plainly: every number is checked against human bounds, its method's own
consistency rules and the views it was read from, and set beside the published normal range for the patient's sex.

One table of rules for every method, so a number that breaks one is shown flagged with the rule it breaks, never
silently. `check(table, ...)` takes the report's measures (method, measure, value, unit, cine) and returns them with
`flag`, `normal`, `z` and `vs_normal`, plus the measures the given views cannot show.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from .measure import frame_diff

# Any adult human heart, disease included (a value outside is a measurement failure, not a finding).
BOUNDS = {"LVEDV": (30, 700), "LVESV": (5, 650), "LVSV": (10, 250), "LVEF": (5, 90), "LVM": (30, 500),
          "LVCO": (1, 15), "RVEDV": (30, 700), "RVESV": (5, 650), "RVSV": (10, 250), "RVEF": (5, 90),
          "LAVmax": (10, 400), "LAVmin": (3, 350), "LASV": (2, 150), "LAEF": (3, 90),
          "RAVmax": (10, 400), "RAVmin": (3, 350), "RASV": (2, 150), "RAEF": (3, 90),
          "MAPSE": (2, 25), "TAPSE": (5, 40), "s_prime": (2, 20), "e_prime": (1.5, 25), "a_prime": (1.5, 25),
          "age": (18, 110), "BMI": (12, 70), "SBP": (60, 260), "DBP": (30, 160)}
BSA_RANGE = (1.2, 2.6)  # m²: an indexed measure's bounds are its absolute bounds over this range
FRAMES_APART = 2  # ED or ES frames of one cine named by two methods agree within this many frames (cyclically)
SV_MATCH = 0.15  # LV and RV stroke volumes within 15 % of the larger (Ruijsink et al., JACC CVI 2019)

# The views a measure is read from: from other views a method can only guess it.
NEEDS_VIEWS = {"LA": ("2CH", "4CH"), "RA": ("4CH",), "MAPSE": ("2CH", "4CH"), "s_prime": ("2CH", "4CH"),
               "e_prime": ("2CH", "4CH"), "a_prime": ("2CH", "4CH"), "TAPSE": ("4CH",)}

# Normal ranges: mean and SD by sex, from Petersen SE et al., J Cardiovasc Magn Reson 2017;19:18 (UK Biobank, 804
# healthy Caucasians aged 45-74, 1.5 T SSFP, papillary muscles in the LV volume), the values its abstract states.
REFERENCE = {"LVEF": {"male": (58.0, 5.0), "female": (61.0, 5.0)},
             "LVMi": {"male": (53.0, 9.0), "female": (42.0, 7.0)}}
REFERENCE_SOURCE = ("Petersen SE, Aung N, Sanghvi MM, et al. Reference ranges for cardiac structure and function using "
                    "CMR in Caucasians from the UK Biobank population cohort. J Cardiovasc Magn Reson 2017;19:18 "
                    "(healthy adults aged 45-74; normal = mean ± 1.96 SD)")
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
SV_RULE = f"LV and RV stroke volumes within {SV_MATCH:.0%} of each other (no regurgitation reported)"


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


def _flags_of_value(row, n_frames: dict[str, int]) -> list[str]:
    """Flags one number earns on its own: not measured, outside human bounds, a frame outside its cine."""
    v = row.value
    if v is None or not np.isfinite(v):
        return ["could not be measured from these cines"]
    if row.unit == "frame":
        n = next((n_frames[v] for v in views_of(row.cine) if v in n_frames), None)
        return [] if n is None or 0 <= v < n else [f"frame {v:g} is outside the cine's {n} frames"]
    b = bounds(row.measure, row.unit)
    if b and not b[0] <= v <= b[1]:
        return [f"outside human range {b[0]:.3g}-{b[1]:.3g} {row.unit}".rstrip()]
    return []


def _rule_flags(values: dict[str, float], regurgitation: bool) -> dict[str, list[str]]:
    """measure -> the consistency rules its method's numbers break."""
    out: dict[str, list[str]] = {}
    rules = list(RULES)
    if not regurgitation:
        rules.append(Rule(SV_RULE, ("LVSV", "RVSV"),
                          lambda lv, rv: abs(lv - rv) <= SV_MATCH * max(abs(lv), abs(rv))))
    for r in rules:
        xs = [values.get(m) for m in r.measures]
        if any(x is None or not np.isfinite(x) for x in xs):
            continue
        if not r.holds(*xs):
            for m in r.measures:
                out.setdefault(m, []).append(f"breaks {r.text}")
    return out


def _frame_flags(tab: pd.DataFrame, n_frames: dict[str, int]) -> dict[int, list[str]]:
    """row index -> disagreements between methods naming the ED or ES frame of the same cine."""
    out: dict[int, list[str]] = {}
    frames = tab[tab.measure.map(frame_of).notna() & tab.value.notna()]
    for (view, which), g in frames.groupby([frames.cine.map(lambda c: "+".join(sorted(views_of(c)))),
                                            frames.measure.map(frame_of)]):
        n = n_frames.get(view, 0)
        for i, a in g.iterrows():
            for j, b in g.iterrows():
                if a.method != b.method and frame_diff(a.value, b.value, n) > FRAMES_APART:
                    out.setdefault(i, []).append(f"{which} frame {b.value:g} by {b.method} is more than "
                                                 f"{FRAMES_APART} frames away")
    return out


def regurgitation_reported(tab: pd.DataFrame) -> bool:
    """Whether a method says the patient has valve regurgitation (then the stroke volumes may differ)."""
    mr = tab[tab.measure.str.startswith("MR (") & (tab.unit == "yes=1")]
    return bool(len(mr) and (mr.value >= 1).any())


def reference(measure: str, value: float, sex: str | None) -> tuple[str, float, str]:
    """(normal range text, z, below/within/above) of a measure for a sex; ('', nan, why) without one."""
    ref = REFERENCE.get(measure)
    if ref is None:
        return "", math.nan, ""
    if sex not in SEXES:
        return "", math.nan, "give the patient's sex for a normal range"
    mean, sd = ref[sex]
    z = (value - mean) / sd
    where = "below" if z < -Z_NORMAL else "above" if z > Z_NORMAL else "within"
    return f"{mean - Z_NORMAL * sd:.0f}-{mean + Z_NORMAL * sd:.0f}", round(z, 2), where  # the sex is never printed


def with_indexed(tab: pd.DataFrame, bsa: float | None) -> pd.DataFrame:
    """The measures plus their BSA-indexed forms (where a normal range exists and the method gave none)."""
    if not bsa or not len(tab):
        return tab
    rows = []
    for _, r in tab.iterrows():
        name = f"{r.measure}i"
        if name in REFERENCE and not ((tab.method == r.method) & (tab.measure == name)).any():
            rows.append(r.to_dict() | dict(measure=name, value=r.value / bsa, unit=f"{r.unit}/m²"))
    return pd.concat([tab, pd.DataFrame(rows)], ignore_index=True) if rows else tab


def check(tab: pd.DataFrame, views: Iterable[str], n_frames: dict[str, int] | None = None, sex: str | None = None,
          bsa: float | None = None, input_flags: dict[str, dict[str, str]] | None = None
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the measures with flag, normal, z, vs_normal; the measures these views cannot show). A number from a cine
    whose cine's metadata input QC flagged (`input_flags`: view -> {'frames'|'timing'|'space': why}) carries that flag when it
    depends on it; `n_frames`: view -> frames."""
    n_frames, input_flags, views = dict(n_frames or {}), dict(input_flags or {}), set(views)
    tab = with_indexed(tab.reset_index(drop=True), bsa)
    shown = tab.measure.map(lambda m: measurable(m, views))
    hidden, tab = tab[~shown].reset_index(drop=True), tab[shown].reset_index(drop=True)
    flags = {i: _flags_of_value(r, n_frames) for i, r in tab.iterrows()}
    regurg = regurgitation_reported(tab)
    for method, g in tab.groupby("method"):
        broken = _rule_flags(dict(zip(g.measure, g.value)), regurg)
        for i, r in g.iterrows():
            flags[i] += broken.get(r.measure, [])
    for i, more in _frame_flags(tab, n_frames).items():
        flags[i] += more
    for i, r in tab.iterrows():
        flags[i] += [f"{v} cine: {why}" for v in sorted(views_of(r.cine)) for kind, why in input_flags.get(v, {}).items()
                     if why and r.unit in SPOILS[kind]]
    refs = [reference(r.measure, r.value, sex) for r in tab.itertuples()]
    tab = tab.assign(flag=["; ".join(flags[i]) for i in range(len(tab))], normal=[x[0] for x in refs],
                     z=[x[1] for x in refs], vs_normal=[x[2] for x in refs])
    return tab, hidden
