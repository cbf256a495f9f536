"""The ED/ES Predictor: a TempReg-Net (or a baseline network) with the frame size and zoom it was trained at."""
from __future__ import annotations

from torch import nn

from ...predictor import Prediction
from ...predictor import Predictor as Base
from ...record import Cine
from .predict import predict


class Predictor(Base):
    """nets: {'net': the ED/ES network}; prep: size, zoom, smooth (frames of the circular moving average)."""

    method = "edes"
    views = ("SAX", "2CH", "4CH")
    short_name = "TempReg-Net, notebook 02"
    title = f"End-diastole and end-systole ({short_name})"

    @classmethod
    def from_model(cls, model: nn.Module, name: str, size: int, zoom: float, smooth: int = 1,
                   provenance: dict | None = None) -> "Predictor":
        return cls({"net": model.eval()}, dict(size=int(size), zoom=float(zoom), smooth=int(smooth)),
                   provenance=provenance, model=name)

    def _predict(self, cines: list[Cine]) -> Prediction:
        out = Prediction(self.method, self.model)
        for c in cines:
            r = predict(self.nets["net"], c, **self.prep)
            out.add(f"ED ({c.view})", r["ed"], "frame", c.cine_id)
            out.add(f"ES ({c.view})", r["es"], "frame", c.cine_id)
            out.detail[c.cine_id] = r
        return out

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """The regressed curve of each cine with the ED and ES it implies."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 2.6))
        for cid, r in prediction.detail.items():
            ax.plot(r["curve"], label=f"{cines[cid].view}: ED {r['ed']}, ES {r['es']}")
        ax.set(xlabel="frame", ylabel="predicted curve (1 ED, 0 ES)")
        ax.legend(fontsize=8)
        return fig
