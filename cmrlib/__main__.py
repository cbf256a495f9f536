"""`python -m cmrlib` is the `cmrlib` command."""
import sys

from .cli import main

sys.exit(main())
