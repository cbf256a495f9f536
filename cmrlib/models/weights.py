"""Pretrained weights from the local torch cache only: nothing is downloaded at run time, and a missing file is
one clear error that says where to put it."""
from __future__ import annotations

from pathlib import Path

import torch


class WeightsUnavailable(FileNotFoundError):
    """Pretrained weights were asked for but are not in the local torch cache (no downloads here)."""


def cached_state(url: str, what: str, path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The state dict torchvision would download from `url`, read from `path` when given, else from
    `$TORCH_HOME/hub/checkpoints`."""
    f = Path(path) if path else Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not f.is_file():
        shown = str(f).replace(str(Path.home()), "~")  # no user name in a notebook's output or a log
        raise WeightsUnavailable(f"{what} weights are not available offline: expected {shown}. Download {url} on a "
                                 f"connected machine and place it there (or set TORCH_HOME), or use pretrained=False.")
    return torch.load(f, map_location="cpu", weights_only=True)
