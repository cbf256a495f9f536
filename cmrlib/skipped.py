"""The one way a step says it cannot run here (no real data under the data root, too few patients, a section the
run turned off): an error with its reason, which the notebook shows instead of a table. A ground-floor module, so
the readers (`io.real`) and the Studies raise the same one."""
from __future__ import annotations


class StudySkipped(RuntimeError):
    """A step that cannot run here: its reason, shown by the notebook instead of a table."""
