"""The ED/ES Predictor: the detector notebook 02 validated on real hearts. A network (TempReg-Net or a baseline,
with the frame size and zoom it was trained at), the LV volume curve of the run's segmenter, or both averaged on
the cycle."""
from __future__ import annotations

from torch import nn

from ...models.tempreg import TempRegNet

from ...predictor import SEGMENTER, NotApplicable, Prediction, PredictorError
from ...predictor import Predictor as Base
from ...record import Cine
from .curves import DECODERS
from .data import Reading
from .predict import combine, predict, seg_detect

NETWORK, VOLUME_CURVE, COMBINED = "network", "volume curve", "combined"  # what a Predictor's `detector` may be
DETECTOR_KINDS = (NETWORK, VOLUME_CURVE, COMBINED)
MAX_SLICES, MIN_FRAMES, MAX_FRAMES = 9, 8, 200  # the bounds a model file's reading must keep


class Predictor(Base):
    """nets: {'net': the ED/ES network} (none for the volume curve); prep: detector (`DETECTOR_KINDS`), the
    network's size, zoom, smooth, decoder, slices and frames (`data.Reading`), the curve's curve_smooth (frames of
    each circular moving average); needs: {'segmenter': 'segmentation'} where the LV volume curve takes part."""

    method = "edes"
    views = ("SAX", "2CH", "4CH")
    short_name = "ED/ES, notebook 02"
    title = f"End-diastole and end-systole ({short_name})"
    roles = {"net": (TempRegNet,)}

    @classmethod
    def from_model(cls, model: nn.Module, name: str, size: int, zoom: float, smooth: int = 1,
                   provenance: dict | None = None, decoder: str = "argmax", reading: Reading = Reading()
                   ) -> "Predictor":
        """A network alone (`decoder`: how its curve becomes ED and ES, `curves.DECODERS`; `reading`: the slices
        averaged and the frames resampled to at test, `data.Reading`)."""
        prep = dict(detector=NETWORK, size=int(size), zoom=float(zoom), smooth=int(smooth))
        prep |= {"decoder": decoder} if decoder != "argmax" else {}
        prep |= {"slices": int(reading.slices)} if reading.slices != 1 else {}
        prep |= {"frames": int(reading.frames)} if reading.frames else {}
        return cls({"net": model.eval()}, prep, provenance=provenance, model=name)

    @classmethod
    def from_volume_curve(cls, smooth: int = 1, provenance: dict | None = None, segmenter: str = "segmentation",
                          decoder: str = "argmax") -> "Predictor":
        """The LV volume curve of the run's segmentation Predictor: ED its largest, ES its smallest frame (or as
        `decoder` reads it, `curves.DECODERS`)."""
        prep = dict(detector=VOLUME_CURVE, curve_smooth=int(smooth))
        prep |= {"decoder": decoder} if decoder != "argmax" else {}
        return cls({}, prep, dict(segmenter=segmenter), provenance, "LV volume curve of the run's segmenter")

    @classmethod
    def combined(cls, model: nn.Module, name: str, size: int, zoom: float, smooth: int = 1, curve_smooth: int = 1,
                 provenance: dict | None = None, segmenter: str = "segmentation") -> "Predictor":
        """A network and the LV volume curve, their frames averaged on the cycle."""
        return cls({"net": model.eval()}, dict(detector=COMBINED, size=int(size), zoom=float(zoom), smooth=int(smooth),
                                               curve_smooth=int(curve_smooth)), dict(segmenter=segmenter), provenance,
                   f"{name} + LV volume curve")

    @property
    def detector(self) -> str:
        """Which detector this is (a file without the key holds a network)."""
        kind = self.prep.get("detector", NETWORK)
        if kind not in DETECTOR_KINDS:
            raise PredictorError(f"edes: unknown detector {str(kind)[:40]!r}; one of {DETECTOR_KINDS}")
        return kind

    @property
    def decoder(self) -> str:
        """How the network's curve (the volume curve's, when it stands alone) becomes ED and ES (a file without the
        key: its extremes)."""
        dec = self.prep.get("decoder", "argmax")
        if dec not in DECODERS:
            raise PredictorError(f"edes: unknown decoder {str(dec)[:40]!r}; one of {DECODERS}")
        return dec

    @property
    def reading(self) -> dict:
        """The slices the network's curves average and the frames it reads the cycle at (a file without the keys:
        one slice, the cine's own frames)."""
        slices, frames = self.prep.get("slices", 1), self.prep.get("frames")
        if not isinstance(slices, int) or isinstance(slices, bool) or not 1 <= slices <= MAX_SLICES:
            raise PredictorError(f"edes: slices must be a whole number from 1 to {MAX_SLICES}, not "
                                 f"{str(slices)[:20]!r}")
        if frames is not None and (not isinstance(frames, int) or isinstance(frames, bool)
                                   or not MIN_FRAMES <= frames <= MAX_FRAMES):
            raise PredictorError(f"edes: frames must be a whole number from {MIN_FRAMES} to {MAX_FRAMES}, not "
                                 f"{str(frames)[:20]!r}")
        return dict(slices=slices, frames=frames)

    def wanted(self) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, str]]:
        """A network and its input size and zoom, or the run's segmenter, or both (as the detector says); its
        decoder and reading known."""
        kind, _, _ = self.detector, self.decoder, self.reading
        net = (("net",), ("size", "zoom")) if kind != VOLUME_CURVE else ((), ())
        return *net, ({"segmenter": SEGMENTER} if kind != NETWORK else {})

    def reads(self, view: str) -> bool:
        """The volume curve reads the views the segmenter reads; a network reads SAX, 2CH and 4CH."""
        if self.detector == NETWORK:
            return view in self.views
        return view in self.views and self.need("segmenter").reads(view)

    def detect(self, cine: Cine) -> dict:
        """ED, ES (0-based frames) and the curve they were read from, for one cine."""
        kind = self.detector
        net = ({k: self.prep[k] for k in ("size", "zoom", "smooth")} | {"decoder": self.decoder} | self.reading
               if kind != VOLUME_CURVE else None)
        if kind == NETWORK:
            return predict(self.nets["net"], cine, **net)
        if kind == VOLUME_CURVE:
            return seg_detect(self.need("segmenter"), cine, self.prep.get("curve_smooth", 1), self.decoder)
        curve = seg_detect(self.need("segmenter"), cine, self.prep.get("curve_smooth", 1))
        return combine(curve, predict(self.nets["net"], cine, **net), cine.n_frames)

    def _predict(self, cines: list[Cine]) -> Prediction:
        out = Prediction(self.method, self.model)
        for c in cines:
            if not self.reads(c.view):
                continue
            r = self.detect(c)
            out.add(f"ED ({c.view})", r["ed"], "frame", c.cine_id)
            out.add(f"ES ({c.view})", r["es"], "frame", c.cine_id)
            out.detail[c.cine_id] = r
        if not out.detail:
            raise NotApplicable(f"the run's segmenter reads none of these views ({', '.join(c.view for c in cines)})")
        return out

    def figure(self, prediction: Prediction, cines: dict[str, Cine]):
        """The curve each cine's ED and ES were read from."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 2.6))
        for cid, r in prediction.detail.items():
            ax.plot(r["curve"], label=f"{cines[cid].view}: ED {r['ed']}, ES {r['es']}")
        ylabel = "LV volume (mL) or area" if self.detector != NETWORK else "predicted curve (1 ED, 0 ES)"
        ax.set(xlabel="frame", ylabel=ylabel)
        ax.legend(fontsize=8)
        return fig
