"""Typed ingest errors: each names the file and the problem, so a batch report says what to fix."""
from __future__ import annotations

from pathlib import Path

from ..labels import LabelError


class IngestError(ValueError):
    """A source file or folder cannot become a canonical cine; `.path` names it, the message says why."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):  # keep (path, problem) across process pools
        return (type(self), (self.path, self.problem))


class MissingFileError(IngestError):
    """An expected file (image, mask, Info.cfg, info CSV) is not there."""


class CorruptFileError(IngestError):
    """A file is truncated or unreadable (bad gzip, broken NIfTI/DICOM/zip)."""


class NoPixelDataError(IngestError):
    """A DICOM file carries no pixel data."""


class MixedFrameSizeError(IngestError):
    """Frames or slices that must stack have different matrix sizes."""


class MissingFramesError(IngestError):
    """A cine or stack lacks frames (fewer files than declared, gaps in trigger times, unequal counts)."""


class InconsistentSpacingError(IngestError):
    """Pixel spacing, orientation or slice gaps disagree across a stack."""


class InvalidSpacingError(IngestError):
    """A voxel or pixel spacing is zero, negative or not a number (volumes would come out wrong by that factor)."""


class ShapeMismatchError(IngestError):
    """A mask's shape does not match its image."""


class UnknownLabelError(IngestError, LabelError):
    """A mask holds label values its source convention does not define."""


class MetadataError(IngestError):
    """Subject metadata is missing or malformed (Info.cfg keys, info CSV rows, sidecar fields)."""


class NonCineError(IngestError):
    """A series is not a cine (a single frame, no trigger times, no time axis)."""


class UnknownViewError(IngestError):
    """The view (SAX/2CH/3CH/4CH) cannot be told from the series; pass it explicitly."""


def labels_error(path: str | Path, err: LabelError) -> UnknownLabelError:
    """Re-raise a `cmrlib.labels.LabelError` as an ingest error naming the mask file."""
    return UnknownLabelError(path, str(err))
