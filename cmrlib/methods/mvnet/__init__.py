"""MVnet: mitral-valve insertion-point tracking in 2CH/4CH cines (Gonzales et al., JCMR 2021).

stage 1 regresses the two points on the whole frame fitted into 160 x 160; the standardisation (resample to
0.75 mm, valve horizontal, apex down, crop 118 x 162) is one invertible `Affine2D` per cine; stage 2 regresses
on the standardised frames and repeating it gives 1+2+2. Test-time crops and temporal smoothing are chosen on
validation cines (`choose_inference`); the `Predictor` keeps them with each view's tracker and gives MAPSE, s', e'
and a'. Points are (x, y) pixels in `cmrlib.record.LANDMARKS` order.
"""
from .data import Aug, PointFrames, Track, load_cines, mixed_tracks, tracks_from_cines
from .evaluate import (choose_inference, clinical, convention_matrix, evaluate, observer_frames, point_errors,
                       pooled_displacement_error, spatial_errors, summarise_spatial, valve_angle_error)
from .figures import displacement_figure, heatmap_figure, spatial_figure, tracking_figure
from .geometry import (S1_SIZE, STAGES, STD_RES, STD_SIZE, VIEWS, MVnetError, frames_input, from_unit, perturb_points,
                       stage1_geometry, standardise, to_unit)
from .learner import MVConfig, fit, fit_or_load, stage_learner, train_stage
from .predict import MVnet, load, model_path, predict, predict_all, predict_store, smooth_track, tta_shifts
from .predictor import Predictor

__all__ = ["Predictor", "Study", "S1_SIZE", "STD_SIZE", "STD_RES", "VIEWS", "STAGES", "MVnetError", "Track", "tracks_from_cines",
           "load_cines", "mixed_tracks", "stage1_geometry", "standardise", "perturb_points", "to_unit", "from_unit",
           "frames_input", "Aug", "PointFrames", "stage_learner", "train_stage", "MVConfig", "fit", "fit_or_load", "load", "predict",
           "MVnet", "tta_shifts", "smooth_track", "choose_inference", "model_path", "predict_all",
           "predict_store", "point_errors",
           "valve_angle_error", "spatial_errors", "clinical", "evaluate", "observer_frames",
           "pooled_displacement_error", "summarise_spatial", "convention_matrix", "spatial_figure",
           "displacement_figure", "heatmap_figure", "tracking_figure"]
from .study import Study
