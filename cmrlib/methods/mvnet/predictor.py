"""The MVnet Predictor: a tracker per long-axis view (stages, passes, smoothing and test-time crops chosen on
validation) and the valve's clinical measures from its last pass."""
from __future__ import annotations

from ...measure import UNITS
from ...predictor import NotApplicable, Prediction
from ...predictor import Predictor as Base
from ...record import Cine
from ...plots import overlay, shown_frame
from .data import tracks_from_cines
from .evaluate import clinical
from .predict import MVnet


class Predictor(Base):
    """nets: view -> `MVnet`; prep: velocity_window (Savitzky-Golay frames for s', e', a')."""

    method = "mvnet"
    views = ("2CH", "4CH")
    short_name = "MVnet, notebook 03"
    title = f"Mitral annulus motion ({short_name})"
    roles = {"2CH|4CH": (MVnet,)}

    def wanted(self) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
        """A tracker of a 2CH or 4CH cine and the window of its velocities."""
        return ("2CH|4CH",), ("velocity_window",), {}

    @classmethod
    def from_trackers(cls, trackers: dict[str, MVnet], velocity_window: int | None,
                      provenance: dict | None = None) -> "Predictor":
        return cls(dict(trackers), dict(velocity_window=velocity_window), provenance=provenance, model="MVnet 1+2+2")

    def _predict(self, cines: list[Cine]) -> Prediction:
        out = Prediction(self.method, self.model)
        views = {}
        for c in cines:
            if c.view not in self.nets:
                continue
            (track,) = tracks_from_cines([c], None)
            tracker = self.nets[c.view]
            points = tracker.track_cine(track)["1" + "+2" * tracker.n_refine]
            views[c.view] = (points, track)
            out.detail[c.cine_id] = points
        if not views:
            raise NotApplicable(f"no tracker for {', '.join(c.view for c in cines)} (has {', '.join(self.nets)})")
        used = "+".join(sorted(views))
        for k, v in clinical(views, self.prep["velocity_window"]).items():
            out.add(k, v, UNITS[k], used)
        return out

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """The two annulus points' paths over the cycle on each cine's first frame."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(prediction.detail), figsize=(3.2 * len(prediction.detail), 3.2), squeeze=False)
        for ax, (cid, pts) in zip(axes[0], prediction.detail.items()):
            overlay(ax, shown_frame(cines[cid], 0)[0], title=f"{cines[cid].view}: annulus points over the cycle")
            for k, col in ((0, "tab:red"), (1, "tab:cyan")):
                ax.plot(pts[:, k, 0], pts[:, k, 1], color=col, lw=0.8)
                ax.plot(*pts[0, k], "o", color=col, ms=3)
        return fig
