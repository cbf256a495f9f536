"""CUSSP's two curves beyond Table 2: CUSSP-SIAM-25 as its Barlow Twins encoder's unlabelled pool grows, and the
Siamese rows against a random encoder and the supervised ResNet-18 as the labelled training cines shrink (the
paper's claim where it can show: pretraining earns its keep when labels are few). Each is a plain function of the
named pieces the Study hands it: the model inputs by split (`Inputs`), the encoders, Table 2's scored rows."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...learn import Made, attempt
from ...utils import rng, seed_for
from .data import Inputs, PatchAug
from .evaluate import auc_gap, evaluate, thresholds
from .learner import INPUTS, SUPERVISED, CUSSPConfig, fit_siamese, fit_supervised, scores

# the label-budget curve's rows: name -> (Table 2 row it trains like, encoder: pretrained, random or none)
BUDGET_ROWS = {"CUSSP-SIAM": ("CUSSP-SIAM", "pretrained"), "CUSSP-SIAM-25": ("CUSSP-SIAM-25", "pretrained"),
               "CUSSP-SIAM (random encoder)": ("CUSSP-SIAM", "random"),
               "CUSSP-SIAM-25 (random encoder)": ("CUSSP-SIAM-25", "random"), SUPERVISED: (SUPERVISED, None)}
POOL_COLUMNS = ["row", "metric", "value", "ci_low", "ci_high", "pool_fraction", "pool_cines"]
BUDGET_COLUMNS = ["budget", "draw", "row", "n_train", "n_train_mr", "threshold", "f1", "roc_auc"]


@dataclass(frozen=True)
class Curve:
    """A curve's table, its fits' log rows and failures."""

    table: pd.DataFrame
    logs: list
    failed: list


@dataclass(frozen=True)
class Budget:
    """The label-budget curve's table, the test (y, scores) by (budget, draw, row), its fits' log rows and
    failures."""

    table: pd.DataFrame
    scores: dict
    logs: list
    failed: list


@dataclass(frozen=True)
class Training:
    """How the curves train a row: the config, the classifier stages' augmentation, the run's seed and bootstrap."""

    cfg: CUSSPConfig
    aug: PatchAug
    seed: int
    n_boot: int


def scored(model, inputs: Inputs, inp: str) -> tuple[np.ndarray, float]:
    """A classifier's scores on the evaluated splits and its threshold from the validation split."""
    vx, vy = inputs.xy(inp, "valid")
    th = thresholds({"r": (vy, scores(model, vx))})["r"]
    return scores(model, inputs.data[inp]["eval"][0]), th


def budget_subjects(lab: pd.DataFrame, budget: int, seed: int) -> list[str]:
    """`budget` MR training subjects and non-MR ones in the training split's proportion, drawn with `seed`."""
    g = rng(seed)
    pos, neg = lab.subject[lab.mr == 1].to_numpy(), lab.subject[lab.mr == 0].to_numpy()
    n_neg = min(len(neg), int(round(budget * len(neg) / max(1, len(pos)))))
    return sorted([*g.choice(pos, budget, replace=False), *g.choice(neg, n_neg, replace=False)])


def full_budget(inputs: Inputs, seed: int) -> tuple[int, list[str]]:
    """The budget of every training MR cine: its size and subjects (every training subject)."""
    train_lab = inputs.data["window"]["train"][2]
    n_mr = int(train_lab.mr.sum())
    return n_mr, budget_subjects(train_lab, n_mr, seed_for(seed_for(seed, "cussp", "budget"), n_mr, 0))


def budget_fit(like: str, encoder, inputs: Inputs, subjects: list[str], how: Training, tag: str):
    """One label-budget model: `like`'s training on the budget's cines from `encoder` (None: the supervised row's
    own start); (model or None, log rows, failure or None)."""
    train, valid = inputs.xy(INPUTS[like], "train", subjects), inputs.xy(INPUTS[like], "valid")
    if like == SUPERVISED:
        done, failure = attempt(dict(method="CUSSP", row=tag), fit_supervised, train, valid, how.cfg, how.aug, tag)
        logs = [done[1]] if done else []
    else:
        done, failure = attempt(dict(method="CUSSP", row=tag), fit_siamese, encoder, train, valid, how.cfg, how.aug,
                                tag)
        logs = done[1] if done else []
    return (None, [], failure) if failure else (done[0].model, logs, None)


def random_siam25(inputs: Inputs, random_window, how: Training) -> Made:
    """CUSSP-SIAM-25 from the random start on every training cine: the pool curve's first point and the budget
    curve's last random-encoder one, trained once (`nets`: its model, or None when it failed)."""
    n_mr, pick = full_budget(inputs, how.seed)
    model, logs, failure = budget_fit("CUSSP-SIAM-25", random_window, inputs, pick, how,
                                      f"CUSSP-SIAM-25 (random encoder) budget {n_mr}/0")
    return Made(model, logs, [failure] if failure else [])


def pool_fractions(fractions, trained: bool) -> list[float]:
    """The pool curve's fractions (1.0 is Table 2's row); none when CUSSP-SIAM-25 did not train."""
    return sorted(set(float(f) for f in fractions) | {1.0}) if trained else []


def pool_curve(inputs: Inputs, full_pool: np.ndarray, fractions: list[float], table2: tuple, random_full: Callable,
               encoder: Callable, how: Training) -> Curve:
    """CUSSP-SIAM-25 again from encoders pretrained on fractions of the pool (`encoder(pool, tag)`: pretrained or
    reused), at equal steps: F1 and ROC-AUC by pool size, with the fits' log rows. `table2`: the row's own (test
    (y, scores), threshold) at the whole pool; `random_full()`: the random start trained on every cine (`Made`)."""
    rows, logs, failed = [], [], []
    (y, own), own_th = table2 if fractions else ((None, None), None)
    for frac in fractions:
        n_pool = int(round(frac * len(full_pool)))
        if frac == 1.0:
            s, th = own, own_th
        elif frac == 0.0:  # no unlabelled cines: the random start, the budget curve's random row on every cine
            full = random_full()
            logs, failed = logs + full.logs, failed + full.failed
            if full.nets is None:
                continue
            s, th = scored(full.nets, inputs, "window")
        else:
            pick = np.sort(rng(seed_for(how.seed, "cussp", "pool", frac)).choice(len(full_pool), n_pool,
                                                                                replace=False))
            enc, row = encoder(full_pool[pick], f"window {frac:.2f}")
            learn, fit_logs = fit_siamese(enc, inputs.xy("window", "train"), inputs.xy("window", "valid"), how.cfg,
                                          how.aug, f"CUSSP-SIAM-25 pool {frac:.2f}")
            logs += [row, *fit_logs]
            s, th = scored(learn.model, inputs, "window")
        m = evaluate({"CUSSP-SIAM-25": (y, s)}, {"CUSSP-SIAM-25": th}, n_boot=how.n_boot,
                     seed=seed_for(how.seed, "cussp", "boot"))
        rows.append(m.assign(pool_fraction=frac, pool_cines=n_pool))
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=POOL_COLUMNS)
    return Curve(table, logs, failed)


def label_budget(inputs: Inputs, budgets, draws: int, encoders: dict, random_encoders: dict, models: dict,
                 random_full: Callable, in_pool: bool, how: Training) -> Budget:
    """The Siamese rows from the Barlow Twins encoders (`encoders` by input) against the same rows from a random
    encoder and the supervised ResNet-18, trained on each budget of MR cines (with their share of non-MR cines;
    `draws` draws each) and on every training cine (Table 2's own `models` there); thresholds from validation, test
    once. `in_pool`: the pool curve already trained (and logged) the full-budget random SIAM-25."""
    seed = seed_for(how.seed, "cussp", "budget")
    train_lab = inputs.data["window"]["train"][2]  # subjects with both inputs
    n_mr = int(train_lab.mr.sum())
    rows, by_draw, logs, failed, made = [], {}, [], [], {}
    full_key = ("CUSSP-SIAM-25", "random", tuple(full_budget(inputs, how.seed)[1]))
    for budget in [*[int(b) for b in budgets if 0 < int(b) < n_mr], n_mr]:
        for draw in range(int(draws) if budget < n_mr else 1):
            pick = budget_subjects(train_lab, budget, seed_for(seed, budget, draw))
            for name, (like, enc) in BUDGET_ROWS.items():
                key, inp = (like, enc, tuple(pick)), INPUTS[like]
                if budget == n_mr and enc != "random" and like in models:
                    model = models[like].model  # every training cine: Table 2's own row
                elif key == full_key:
                    full = random_full()
                    if not in_pool and key not in made:
                        logs, failed = logs + full.logs, failed + full.failed
                    made[key] = model = full.nets
                elif key in made:
                    model = made[key]
                elif enc == "pretrained" and inp not in encoders:
                    model = None
                else:
                    encoder = encoders[inp] if enc == "pretrained" else random_encoders[inp] if enc else None
                    model, fit_logs, failure = budget_fit(like, encoder, inputs, pick, how,
                                                          f"{name} budget {budget}/{draw}")
                    made[key] = model
                    logs += fit_logs
                    failed += [failure] if failure else []
                if model is None:
                    continue
                s, th = scored(model, inputs, inp)
                y = inputs.data[inp]["eval"][1]
                by_draw[(budget, draw, name)] = (y, s)
                m = evaluate({name: (y, s)}, {name: th}, n_boot=0).set_index("metric").value
                rows.append(dict(budget=budget, draw=draw, row=name, n_train=len(pick), n_train_mr=budget,
                                 threshold=th, f1=m.get("f1"), roc_auc=m.get("roc_auc")))
    return Budget(pd.DataFrame(rows, columns=BUDGET_COLUMNS), by_draw, logs, failed)


def budget_gap(by_draw: dict, budget: int | None, n_boot: int, seed: int) -> dict:
    """CUSSP-SIAM-25 minus the supervised ResNet-18 in test ROC-AUC at a budget (the smallest by default), the
    draws' mean with a bootstrap CI over the test cines."""
    if not by_draw:
        return dict(budget=np.nan, gap=np.nan, ci_low=np.nan, ci_high=np.nan)
    budget = min(b for b, _, _ in by_draw) if budget is None else budget
    pair = [(by_draw.get((budget, d, "CUSSP-SIAM-25")), by_draw.get((budget, d, SUPERVISED)))
            for d in sorted({d for b, d, _ in by_draw if b == budget})]
    pair = [(a, b) for a, b in pair if a is not None and b is not None]
    if not pair or not np.array_equal(pair[0][0][0], pair[0][1][0]):  # the two rows score different cines
        return dict(budget=budget, gap=np.nan, ci_low=np.nan, ci_high=np.nan)
    return dict(budget=budget, **auc_gap(pair[0][0][0], [a[1] for a, _ in pair], [b[1] for _, b in pair],
                                         n_boot=n_boot, seed=seed_for(seed, "cussp", "gap")))
