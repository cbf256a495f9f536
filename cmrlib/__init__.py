"""cmrlib: a thin fastai-based library for reproducible deep learning on cine cardiac MRI."""
from .record import Cine
from .store import CohortStore
from .utils import seed_everything

__version__ = "0.1.0"
__all__ = ["Cine", "CohortStore", "seed_everything", "__version__"]
