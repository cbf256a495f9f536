"""The run folder's one long shape: every method notebook writes its per-subject measures as `NN/measures_long.csv`
with these columns (value beside its reference, unit and view), and the analysis (notebooks 07-09, the report)
reads only those. The writers for each notebook's own tables live here, below the methods that use them."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .measure import UNITS

LONG_COLUMNS = ["cohort", "subject", "view", "measure", "method", "value", "unit", "reference", "reference_kind",
                "split", "condition"]
VIEW_OF_PREFIX = {"LV": "SAX", "RV": "SAX", "LA": "2CH+4CH", "RA": "4CH", "MAPSE": "2CH+4CH", "s_prime": "2CH+4CH",
                  "e_prime": "2CH+4CH", "a_prime": "2CH+4CH"}
STAGE_METHODS = {"1": "MVnet stage 1", "1+2": "MVnet 1+2", "1+2+2": "MVnet 1+2+2", "obsA2": "observer 2",
                 "truth": "true motion"}  # notebook 03's column suffixes -> method names
# the phantom's generating values where it has them (as notebook 01 reports), else its true masks (indexed measures)
PHANTOM_REFERENCES = {"model": "phantom generating values", "ref": "true masks"}


def view_of(measure: str) -> str:
    """The view(s) a measure is read from (SAX for LV/RV volumes, 2CH+4CH for LA and the mitral annulus)."""
    return next((v for p, v in VIEW_OF_PREFIX.items() if measure.startswith(p)), "")


def _long(df: pd.DataFrame, value: str, reference: str, **fixed) -> pd.DataFrame:
    """Rows of a long table from per-subject columns `value` and `reference`, with fixed columns added."""
    out = pd.DataFrame({"subject": df["subject"].astype(str), "value": pd.to_numeric(df[value], errors="coerce"),
                        "reference": pd.to_numeric(df[reference], errors="coerce")})
    for k, v in fixed.items():
        out[k] = v
    return out


def _finish(rows: list[pd.DataFrame], conditions: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Concatenate long rows, add view and unit, take a missing condition from `conditions`, order the columns."""
    if not rows:
        return pd.DataFrame(columns=LONG_COLUMNS)
    out = pd.concat(rows, ignore_index=True)
    out["view"] = out["measure"].map(view_of)
    out["unit"] = out["measure"].map(lambda m: UNITS.get(m, ""))
    if "condition" not in out:
        out["condition"] = out["subject"].map(dict(conditions or {}))
    for c in LONG_COLUMNS:
        if c not in out:
            out[c] = None
    return out[LONG_COLUMNS]


def from_table1(df: pd.DataFrame, cohort: str, method: str, references: Mapping[str, str],
                split: str = "test") -> pd.DataFrame:
    """Long rows from notebook 01's `measures_*.csv` (`<m>_auto` beside `<m>_<suffix>`, the first suffix of
    `references` (suffix -> kind) the table has for that measure; condition from `group`)."""
    rows = []
    for m in [c[:-5] for c in df.columns if c.endswith("_auto")]:
        suffix = next((s for s in references if f"{m}_{s}" in df.columns), None)
        if suffix is None:
            continue
        r = _long(df, f"{m}_auto", f"{m}_{suffix}", cohort=cohort, measure=m, method=method,
                  reference_kind=references[suffix])
        r["split"] = df["split"].to_numpy() if "split" in df else split
        r["condition"] = df["group"].to_numpy() if "group" in df else None
        rows.append(r)
    return _finish(rows)


def from_columns(df: pd.DataFrame, methods: Mapping[str, str], cohort: str, reference_kind: str,
                 conditions: Mapping[str, str], ref: str = "ref", split: str = "test") -> pd.DataFrame:
    """Long rows from a per-subject table with `<measure>_<suffix>` columns (notebook 03's `clinical_subjects.csv`):
    `methods` maps a suffix to a method name; `<measure>_<ref>` is the reference."""
    rows = []
    for suffix, method in methods.items():
        for col in [c for c in df.columns if c.endswith(f"_{suffix}")]:
            m = col[: -len(suffix) - 1]
            if f"{m}_{ref}" in df.columns:
                rows.append(_long(df, col, f"{m}_{ref}", cohort=cohort, measure=m, method=method, split=split,
                                  reference_kind=reference_kind))
    return _finish(rows, conditions)


def implied_volumes(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """LVEDV, LVESV and LVEF each ED/ES method's frames imply on the phantom's true LV volume curve (notebook 02),
    against the same curve read at the true ED and ES: what a frame error costs in millilitres."""
    rows_of = manifest.set_index("cine_id")
    sax = predictions[(predictions["view"] == "SAX") & predictions["cine_id"].isin(rows_of.index)]
    rows = []
    for _, p in sax.iterrows():
        c = _as_list(rows_of.loc[p["cine_id"], "lv_volume_curve_ml"])
        edv, esv, edv0, esv0 = c[int(p["ed_pred"])], c[int(p["es_pred"])], c[int(p["ed"])], c[int(p["es"])]
        for m, v, r in (("LVEDV", edv, edv0), ("LVESV", esv, esv0),
                        ("LVEF", 100 * (edv - esv) / edv, 100 * (edv0 - esv0) / edv0)):
            rows.append(dict(cohort="phantom", subject=rows_of.loc[p["cine_id"], "subject"], measure=m,
                             method=f"ED/ES: {p['method']}", value=v, reference=r, reference_kind="true volume curve at the true ED/ES",
                             split="test"))
    return _finish([pd.DataFrame(rows)] if rows else [])


def _as_list(v) -> np.ndarray:
    """A manifest list cell (JSON text or a list) as a float array."""
    import json

    return np.asarray(json.loads(v) if isinstance(v, str) else v, dtype=float)
