"""A run's schedule: the waves its notebooks run in (a profile's `together` groups side by side, the rest one after
another) and the minutes a run may take by those waves. The runner executes it; the report counts a run's budget
with it from the records."""
from __future__ import annotations


def waves(names: list[str], groups) -> list[list[int]]:
    """The run's order as waves of indices into `names` (sorted notebook numbers or file names): a group's notebooks
    in one wave where its first one stands (they run side by side), every other notebook alone in its turn. A
    notebook numbered between a group's members runs after the group: the profile says why none reads another's
    outputs."""
    group_of = {m: tuple(g) for g in groups for m in g}
    out, placed = [], set()
    for name in names:
        if name not in placed:
            members = group_of.get(name, (name,))
            out.append([j for j, other in enumerate(names) if other in members and other not in placed])
            placed.update(members)
    return out


def budget_by_waves(budgets: dict[str, float], groups) -> float:
    """Minutes for a whole run: each wave's largest budget, summed (side by side, the notebooks of a group take the
    time of the longest)."""
    names = sorted(budgets)
    return sum(max(budgets[names[i]] for i in w) for w in waves(names, groups))
