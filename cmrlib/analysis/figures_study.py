"""Notebook 09's steps: every notebook's paper-style figures drawn again from the run folder alone, the figure
index and the results report. It knows no method: each notebook's Study says which figures its tables allow."""
from __future__ import annotations

from functools import cached_property
from typing import ClassVar

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..plots import save_figure
from ..predictor import METHODS, study_class
from ..study import Study
from ..utils import atomic_write_text
from . import report
from .clustering_study import Clustering
from .agreement_study import Agreement


def notebook_studies() -> list[type[Study]]:
    """The Study of every notebook that draws from its tables: the methods' (01-06), then 07's and 08's."""
    return [*(study_class(m) for m in METHODS), Agreement, Clustering]


class Figures(Study):
    """Notebook 09: one step per cell, its named pieces shared as cached properties (`outline()` lists both)."""

    method = "figures"
    number = "09"
    PARAMS: ClassVar[dict] = {
        **Study.RUN,  # profile, seed, run_dir, figures_dir, budget_min
        "vector": "pdf",             # vector copy beside each paper-style PNG: pdf | svg | None
    }

    @cached_property
    def drawn(self) -> pd.DataFrame:
        """Each notebook's paper-style figures from its tables, as PNG and the vector copy in `<figures>/paper/`;
        per notebook, the figures it lists and those drawn."""
        sns.set_theme(context="paper", style="whitegrid", font_scale=0.9)
        notebooks = report.load_run(self.nb.run_dir)["notebooks"]
        ran = {r["notebook"][:2] for r in notebooks if r.get("status") == "ok"}
        rows = []
        for study in notebook_studies():
            drawn = []
            for name, fig in study.paper_figures(self.nb.run_dir):
                save_figure(fig, self.nb.figures_dir / "paper", name, vector=self.p["vector"])
                plt.close(fig)
                drawn.append(name)
            if study.PAPER_FIGURES:
                rows.append(dict(notebook=study.number, ran=study.number in ran, listed=len(study.PAPER_FIGURES),
                                 drawn=len(drawn), figures=", ".join(drawn)))
        return pd.DataFrame(rows)

    def paper_figures(self) -> pd.DataFrame:
        """Per notebook, the paper-style figures it lists and those drawn."""
        return self.drawn

    def figure_index(self) -> str:
        """The figure index (`<figures>/README.md`): every figure of the run with its caption."""
        index = report.figure_index(self.nb.run_dir, self.nb.figures_dir)
        atomic_write_text(self.nb.figures_dir / "README.md", index)
        return index

    def report(self) -> str:
        """The results report (`09/report.md`): each notebook's timings, targets and headline tables."""
        text = report.report(self.nb.run_dir)
        atomic_write_text(self.out / "report.md", text)
        return text

    def checks(self) -> pd.DataFrame:
        """Every paper-style figure of the notebooks that ran is drawn."""
        ran = self.drawn[self.drawn["ran"]]
        return self.targets([("paper figures drawn of those the notebooks that ran list", int(ran["drawn"].sum()),
                              ">=", int(ran["listed"].sum()))])
