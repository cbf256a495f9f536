"""Real-data ingest: ACDC, M&Ms, M&Ms-2, UK Biobank zips, any DICOM folder, any NIfTI cine -> the cohort store.

    store = ingest("acdc", "/data/acdc/training", "runs/x/cohort")       # batch: report, resume, splits
    cines = read_dicom_series("/data/study")                               # one Cine per cine series
    cine = read_nifti_cine("la_4ch.nii.gz", "4CH")                          # or a sidecar JSON beside it

Per-subject readers: `read_acdc_patient`, `read_mnms_subject`, `read_mnms2_subject`, `read_ukbb_subject`.
Conventions and licences per source: cmrlib/io/README.md.
"""
from .acdc import read_acdc_patient
from .batch import SOURCES, ingest, source_module
from .dicom import read_dicom_series
from .errors import (CorruptFileError, InconsistentSpacingError, IngestError, MetadataError, MissingFileError,
                     MissingFramesError, MixedFrameSizeError, NoPixelDataError, NonCineError, ShapeMismatchError,
                     UnknownLabelError, UnknownViewError)
from .mnms import read_mnms_subject
from .mnms2 import read_mnms2_subject
from .nifti import read_nifti_cine
from .pseudonyms import PseudonymError, Pseudonyms
from .qa import anatomy_ok, anatomy_scores
from .ukbb import read_ukbb_subject

__all__ = ["SOURCES", "ingest", "source_module", "read_dicom_series", "read_nifti_cine",
           "read_acdc_patient", "read_mnms_subject", "read_mnms2_subject", "read_ukbb_subject", "anatomy_ok",
           "anatomy_scores", "Pseudonyms", "PseudonymError", "IngestError", "MissingFileError", "CorruptFileError",
           "NoPixelDataError", "MixedFrameSizeError", "MissingFramesError", "InconsistentSpacingError",
           "ShapeMismatchError", "UnknownLabelError", "MetadataError", "NonCineError", "UnknownViewError"]
