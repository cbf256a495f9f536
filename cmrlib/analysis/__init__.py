"""The analysis layer across methods, read from a run folder only: agreement (notebook 07), clustering (08), the
report and figure index (09)."""
from . import agreement, clusters, report

__all__ = ["agreement", "clusters", "report"]
