"""Figures the notebooks share: label overlays, agreement (regression + Bland-Altman), cases, curves; atomic saving.

Every builder returns its Axes or Figure (pyplot-managed, so notebooks show them inline); `save_figure` writes the PNG
atomically and closes the figure (pass close=False to keep showing it). Titles carry pseudonyms only: `save_figure`
refuses figures whose text holds a given identifier or a 7-digit number shaped like a UK Biobank EID.
"""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from . import stats
from .labels import LA, LV, MYO, NAMES, RA, RV

__all__ = ["LABEL_COLORS", "POINT_COLORS", "PrivacyError", "overlay", "bland_altman_plot", "regression_plot",
           "agreement_figure", "pick_cases", "cases_figure", "curve_plot", "save_figure"]

# canonical label -> RGB (LV red, MYO green, RV blue, LA yellow, RA magenta)
LABEL_COLORS: dict[int, tuple[float, float, float]] = {
    LV: (1.0, 0.0, 0.0), MYO: (0.0, 0.8, 0.0), RV: (0.0, 0.4, 1.0), LA: (1.0, 0.85, 0.0), RA: (0.85, 0.0, 0.85)}
POINT_COLORS = ("#00e5ff", "#ff9100", "#76ff03", "#ff4081")  # per landmark index (anterior/lateral first)
_MARKERS = ("o", "x", "+", "s")
EID_LIKE = re.compile(r"(?<![\d.])\d{7}(?![\d.])")


class PrivacyError(ValueError):
    """A figure's text holds something that looks like a subject identifier."""


def _window(image: np.ndarray) -> tuple[float, float]:
    """Display range from the 1st-99th percentile, robust to bright outliers."""
    lo, hi = np.percentile(image, (1, 99)) if image.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1)


def label_rgba(mask: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """(H,W,4) RGBA layer colouring each canonical label (transparent background)."""
    m = np.asarray(mask)
    out = np.zeros(m.shape + (4,), dtype=float)
    for lab, rgb in LABEL_COLORS.items():
        out[m == lab] = (*rgb, alpha)
    return out


def overlay(ax: Axes, image: np.ndarray, mask: np.ndarray | None = None, points=None, alpha: float = 0.4,
            mode: str = "fill", title: str = "", point_size: float = 30) -> Axes:
    """Show a 2D frame with its labels (mode 'fill' or 'contour') and landmarks.

    points: (K,2) (x,y) pixels, or a mapping name -> (K,2) to compare sets (e.g. truth vs prediction, one marker each).
    """
    img = np.asarray(image, dtype=float)
    lo, hi = _window(img)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != img.shape:
            raise ValueError(f"overlay: mask shape {m.shape} differs from image shape {img.shape}")
        if mode == "fill":
            ax.imshow(label_rgba(m, alpha), interpolation="nearest")
        elif mode == "contour":
            present = [lab for lab in LABEL_COLORS if (m == lab).any()]
            for lab in sorted(present, key=lambda k: -(m == k).sum()):  # small last: LV stays visible inside MYO
                ax.contour(m == lab, levels=[0.5], colors=[LABEL_COLORS[lab]], linewidths=1.2)
        else:
            raise ValueError(f"overlay: mode must be 'fill' or 'contour', got {mode!r}")
    if points is not None:
        sets = points.items() if isinstance(points, Mapping) else [("", points)]
        for j, (name, p) in enumerate(sets):
            p = np.asarray(p, dtype=float).reshape(-1, 2)
            ax.scatter(p[:, 0], p[:, 1], s=point_size, marker=_MARKERS[j % len(_MARKERS)],
                       c=[POINT_COLORS[k % len(POINT_COLORS)] for k in range(len(p))], label=name or None,
                       linewidths=1.5)
        if isinstance(points, Mapping) and len(points) > 1:
            ax.legend(loc="lower right", fontsize=7, framealpha=0.5)
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax



def shown_frame(cine, t: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame t of a cine and of its label maps as one picture shows them (a SAX stack: its middle slice)."""
    px = cine.pixels[t]
    if not cine.is_stack:
        return px, None if labels is None else labels[t]
    mid = px.shape[0] // 2
    return px[mid], None if labels is None else labels[t][mid]


def view_gallery(store, manifest) -> Figure:
    """Each view's first cine at ED and ES with its labels (any source; the middle slice of a stack)."""
    ids = manifest.groupby("view")["cine_id"].first().tolist()
    fig, axes = plt.subplots(2, len(ids), figsize=(4 * len(ids), 8), squeeze=False)
    for j, cid in enumerate(ids):
        c = store.read(cid)
        for i, (name, t) in enumerate((("ED", c.ed or 0), ("ES", c.es or 0))):
            z = (slice(None),) if not c.is_stack else (c.pixels.shape[1] // 2,)
            overlay(axes[i, j], c.pixels[t][z], None if c.labels is None else c.labels[t][z],
                    title=f"{c.subject} {c.view} {name}")
    fig.tight_layout()
    return fig

def _ax(ax: Axes | None, size=(4, 3.5)) -> Axes:
    return ax if ax is not None else plt.subplots(figsize=size, constrained_layout=True)[1]


def _u(units: str) -> str:
    return f" ({units})" if units else ""


def bland_altman_plot(auto, ref, ax: Axes | None = None, units: str = "", title: str = "") -> Axes:
    """Bland-Altman plot (difference auto - ref vs mean) with the bias and 95 % limits of agreement labelled."""
    a, r = stats.paired(auto, ref)
    ba = stats.bland_altman(a, r)
    ax = _ax(ax)
    ax.scatter((a + r) / 2, a - r, s=14, alpha=0.7, color="tab:blue", edgecolor="none")
    for y, ls, name in ((ba["bias"], "-", "bias"), (ba["loa_high"], "--", "+1.96 SD"), (ba["loa_low"], "--", "-1.96 SD")):
        ax.axhline(y, color="tab:red" if name == "bias" else "0.4", ls=ls, lw=1, gid=name)
        ax.annotate(f"{name} {y:.2f}", xy=(1, y), xycoords=("axes fraction", "data"), xytext=(-3, 2),
                    textcoords="offset points", ha="right", va="bottom", fontsize=7)
    ax.set_xlabel(f"mean of auto and ref{_u(units)}")
    ax.set_ylabel(f"auto − ref{_u(units)}")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def regression_plot(auto, ref, ax: Axes | None = None, units: str = "", title: str = "") -> Axes:
    """Auto vs reference scatter with the identity line, the least-squares fit, r and p."""
    a, r = stats.paired(auto, ref, min_n=3)
    rg = stats.regression(a, r)
    ax = _ax(ax)
    sns.regplot(x=r, y=a, ax=ax, ci=None, scatter_kws=dict(s=14, alpha=0.7), line_kws=dict(color="tab:red", lw=1))
    lo, hi = min(a.min(), r.min()), max(a.max(), r.max())
    pad = 0.05 * (hi - lo or 1)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls=":", color="0.4", lw=1, gid="identity")
    ptxt = "p < 0.001" if rg["p"] < 1e-3 else f"p = {rg['p']:.3f}"
    ax.text(0.03, 0.97, f"r = {rg['r']:.3f}, {ptxt}\ny = {rg['slope']:.2f}x {rg['intercept']:+.2f}",
            transform=ax.transAxes, va="top", fontsize=7)
    ax.set_xlabel(f"reference{_u(units)}")
    ax.set_ylabel(f"automated{_u(units)}")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def agreement_figure(df, pairs: Mapping[str, tuple[str, str]], units: Mapping[str, str] | str | None = None) -> Figure:
    """One column per measure: regression on top, Bland-Altman below (auto - ref)."""
    n = len(pairs)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n, 6.6), squeeze=False, constrained_layout=True)
    for j, (name, (ac, rc)) in enumerate(pairs.items()):
        u = units.get(name, "") if isinstance(units, Mapping) else (units or "")
        regression_plot(df[ac], df[rc], ax=axes[0, j], units=u, title=name)
        bland_altman_plot(df[ac], df[rc], ax=axes[1, j], units=u)
    return fig


def pick_cases(scores: Sequence[float]) -> list[int]:
    """Indices of the best, median and worst score (higher is better; NaNs ignored)."""
    s = np.asarray(scores, dtype=float)
    ok = np.flatnonzero(np.isfinite(s))
    if ok.size == 0:
        raise ValueError("pick_cases: no finite score")
    order = ok[np.argsort(-s[ok], kind="stable")]
    return [int(order[0]), int(order[len(order) // 2]), int(order[-1])]


def cases_figure(images, truths, preds, scores=None, titles: Sequence[str] | None = None,
                 score_name: str = "Dice", mode: str = "contour") -> Figure:
    """Cases side by side (e.g. best/median/worst): truth overlay on top, prediction below, score in the title."""
    n = len(images)
    titles = list(titles) if titles is not None else [""] * n
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), squeeze=False, constrained_layout=True)
    for j in range(n):
        sc = f"{score_name} {scores[j]:.3f}" if scores is not None else ""
        head = " · ".join(t for t in (titles[j], sc) if t)
        overlay(axes[0, j], images[j], truths[j], mode=mode, title=f"{head}\ntruth" if head else "truth")
        overlay(axes[1, j], images[j], preds[j], mode=mode, title="prediction")
    handles = [Line2D([], [], color=c, lw=3, label=NAMES[k]) for k, c in LABEL_COLORS.items()
               if any((np.asarray(m) == k).any() for m in [*truths, *preds])]
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig


def curve_plot(ax: Axes | None, curves: Mapping[str, np.ndarray], frame_times=None,
               marks: Mapping[str, float | Sequence[float]] | None = None, ylabel: str = "", title: str = "") -> Axes:
    """Per-frame curves (e.g. true vs predicted LV volume) with vertical markers (e.g. {'ED true': 0, 'ES pred': 11}).

    Marks are frame indices; with frame_times the x axis is time (ms) and marks are placed at their frame's time.
    """
    ax = _ax(ax, size=(5, 3))
    t = None if frame_times is None else np.asarray(frame_times, dtype=float)
    for name, c in curves.items():
        c = np.asarray(c, dtype=float)
        ax.plot(np.arange(c.size) if t is None else t[: c.size], c, marker=".", lw=1.2, label=name)
    styles = ("--", ":", "-.", (0, (5, 1)))
    for j, (name, frames) in enumerate((marks or {}).items()):
        color = "tab:red" if "ES" in name else ("tab:green" if "ED" in name else f"C{j + 2}")
        for k, f in enumerate(np.atleast_1d(frames)):
            x = float(f) if t is None else float(np.interp(f, np.arange(t.size), t))
            ax.axvline(x, color=color, ls=styles[j % len(styles)], lw=1, label=name if k == 0 else None)
    ax.set_xlabel("frame" if t is None else "time (ms)")
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return ax


def _figure_texts(fig: Figure) -> list[str]:
    """Every non-tick text of a figure (titles, labels, legends, annotations)."""
    ticks = {id(t) for ax in fig.axes for t in (*ax.get_xticklabels(), *ax.get_yticklabels())}
    return [t.get_text() for t in fig.findobj(Text) if id(t) not in ticks and t.get_text()]


def check_privacy(fig: Figure, forbidden: Sequence[str] = ()) -> None:
    """Raise PrivacyError when a figure's text holds a forbidden identifier or an EID-like 7-digit number."""
    for text in _figure_texts(fig):
        hits = [f for f in forbidden if f and str(f) in text]
        if hits or EID_LIKE.search(text):
            raise PrivacyError(f"figure text {text!r} looks like it holds a subject identifier; use pseudonyms")


def save_figure(fig: Figure, figures_dir, name: str, dpi: int = 150, close: bool = True,
                forbidden: Sequence[str] = (), vector: str | None = None) -> Path:
    """Write fig atomically to figures_dir/name.png (dpi 150) after a privacy check, then close it; vector='pdf' or
    'svg' also writes a vector copy beside it (for papers)."""
    check_privacy(fig, forbidden)
    name = name[:-4] if name.endswith(".png") else name
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"save_figure: name must be a plain file stem, got {name!r}")
    if vector not in (None, "pdf", "svg"):
        raise ValueError(f"save_figure: vector must be 'pdf', 'svg' or None, got {vector!r}")
    out = Path(figures_dir) / f"{name}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        for fmt in ("png", *([vector] if vector else [])):
            dst = out.with_suffix(f".{fmt}")
            tmp = out.with_name(f".{out.stem}.{uuid.uuid4().hex}.tmp.{fmt}")
            try:
                fig.savefig(tmp, dpi=dpi, format=fmt, facecolor="white", metadata=_NO_DATE.get(fmt))
                os.replace(tmp, dst)
            finally:
                tmp.unlink(missing_ok=True)
    finally:
        if close:
            plt.close(fig)
    return out


# vector files without a creation date, so a re-run writes the same bytes
_NO_DATE = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}
