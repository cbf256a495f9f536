"""Network architectures (plain torch modules; learners live beside their tasks)."""
from .unet import UNet11, WeightsUnavailable, unet11

__all__ = ["UNet11", "WeightsUnavailable", "unet11"]
