"""cmrlib: a thin fastai-based library for reproducible deep learning on cine cardiac MRI."""
import warnings

# fastai scripts a few helpers with torch.jit at import, which torch >= 2.10 deprecates: a warning on every import
# (in every notebook and Dask worker) that no user can act on
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)

from .record import Cine
from .store import CohortStore
from .utils import seed_everything

__version__ = "0.1.0"
__all__ = ["Cine", "CohortStore", "seed_everything", "__version__"]
