"""The downstream tasks in one place: which phantom truth or user column each head predicts, and of which kind.

Three groups as in the paper, each trained as one multitask probe: cardiac measures (regression, the phantom's
generating values and their BSA-indexed variants), conditions (classification) and extracardiac covariates (age,
BMI, blood pressures by regression; sex by classification). A user's `targets_csv` (subject plus any columns)
becomes one group: binary columns classify, the others regress.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...labels import MR_MIN_GRADE
from ...measure import INDEXED, MODEL_KEYS, UNITS
from ...tables import TableError, number, read_table, subject

# cardiac measure -> manifest column (the phantom's generating values)
CARDIAC = {**MODEL_KEYS, "MAPSE": "mapse_mm", "TAPSE": "tapse_mm", "s_prime": "s_prime_cm_s",
           "e_prime": "e_prime_cm_s", "a_prime": "a_prime_cm_s"}
EF_COLUMNS = ("LVEF", "LAEF", "RVEF", "RAEF")   # Table 1
CONDITIONS = ("HFrEF", "HFpEF", "MR", "AF", "HCM", "MI")
EXTRACARDIAC = {"age": "age", "BMI": "bmi", "SBP": "sbp", "DBP": "dbp"}
GROUPS = ("cardiac", "conditions", "extracardiac")
TASK_UNITS = {**UNITS, "TAPSE": "mm", "age": "years", "BMI": "kg/m²", "SBP": "mmHg", "DBP": "mmHg"}


class TargetsError(TableError):
    """A targets table with no usable target column (the table's own errors are TableErrors)."""


def _conditions(m: pd.DataFrame) -> pd.DataFrame:
    """Each condition as 0/1 from the phantom's flags (MR from `labels.MR_MIN_GRADE`, as notebook 04)."""
    hf = m["hf_class"].astype(str)
    return pd.DataFrame({"HFrEF": hf == "HFrEF", "HFpEF": hf == "HFpEF", "MR": m["mr_grade"].astype(float) >= MR_MIN_GRADE,
                         "AF": m["af"].astype(bool), "HCM": m["hcm"].astype(bool),
                         "MI": m["mi"].astype(bool)}).astype(float)


def phantom_targets(manifest: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """(subject-indexed targets, task -> 'reg'/'cls', task -> group) from a phantom store's manifest."""
    m = manifest.drop_duplicates("subject").set_index("subject")
    cardiac = pd.DataFrame({k: pd.to_numeric(m[c], errors="coerce") for k, c in CARDIAC.items() if c in m})
    bsa = pd.to_numeric(m["bsa_m2"], errors="coerce")
    cardiac = cardiac.join(pd.DataFrame({f"{k}i": cardiac[k] / bsa for k in INDEXED if k in cardiac}))
    extra = pd.DataFrame({k: pd.to_numeric(m[c], errors="coerce") for k, c in EXTRACARDIAC.items()})
    extra["sex (male)"] = (m["sex"].astype(str) == "M").astype(float)
    cond = _conditions(m)
    y = pd.concat([cardiac, cond, extra], axis=1)
    kinds = {**dict.fromkeys(cardiac, "reg"), **dict.fromkeys(cond, "cls"), **dict.fromkeys(EXTRACARDIAC, "reg"),
             "sex (male)": "cls"}
    groups = {**dict.fromkeys(cardiac, "cardiac"), **dict.fromkeys(cond, "conditions"),
              **dict.fromkeys(extra, "extracardiac")}
    return y, kinds, groups


def table_targets(path: str | Path) -> tuple[pd.DataFrame, dict[str, str], dict[str, str]]:
    """A user's targets table (subject + numeric or 0/1 columns) as one group 'targets'."""
    df = read_table(path, {"subject": subject}, extra=number, what="targets table")
    y = df.set_index("subject").dropna(axis=1, how="all")
    if y.empty:
        raise TargetsError(f"targets table {Path(path).name}: no numeric target column")
    binary = lambda c: set(np.unique(c.dropna())) <= {0.0, 1.0}
    kinds = {c: "cls" if binary(y[c]) else "reg" for c in y}
    return y, kinds, dict.fromkeys(y, "targets")


@dataclass(frozen=True)
class Targets:
    """The heads' targets: whether the cohort is the phantom, the targets, their kinds and task groups, the
    subjects with targets and each split's rows of them, the test subjects, and whether there are enough for the
    probes and the paper's three task groups."""

    phantom: bool
    y: pd.DataFrame | None
    kinds: dict
    groups: dict
    subjects: list
    role: dict
    test_subjects: list
    ready: bool
    paper_tasks: bool


def subject_targets(store, targets_csv: str | Path | None, views: pd.DataFrame) -> Targets:
    """The heads' targets (`targets_csv`, or the phantom's truths) of the subjects with views, their roles by the
    store's splits, and whether there are enough for the probes and the paper's three task groups."""
    phantom = (store.root / "phantom.json").exists()
    if targets_csv is not None:
        y, kinds, groups = table_targets(targets_csv)
    elif phantom:
        y, kinds, groups = phantom_targets(store.manifest())
    else:
        y, kinds, groups = None, {}, {}
    splits = store.splits()
    subjects = sorted(set(views["subject"]) & (set(y.index) if y is not None else set()))
    role = {r: np.array([i for i, s in enumerate(subjects) if splits.get(s) == r], dtype=int)
            for r in ("train", "valid", "test")}
    ready = y is not None and len(role["train"]) > 1 and len(role["valid"]) > 0 and len(role["test"]) > 1
    return Targets(phantom, y, kinds, groups, subjects, role, [subjects[i] for i in role["test"]], ready,
                   ready and set(GROUPS) <= set(groups.values()))  # the phantom's three groups
