"""The methods, one package each, all on one protocol: a `Study` (its paper's experiment, notebook NN's steps) and
a `Predictor` (the trained model with every preprocessing setting), both exported by the package's `__init__`.

A Study's steps are its notebook's cells: each shows and writes what it computes, and asks for what it needs by
name (cached properties and small frozen records, e.g. edes' `sequences`, `models`, `test_results`), so any cell can
run first. Its models are made one way (`Study.fit_or_reuse`: reused when the run folder holds them with the same
settings); `train()` (what `cmrlib fit` runs) is those models, then the Predictor. A Predictor's `predict(cines)`
gives named measures with units, and `cmrlib analyse` reads it from the run's `predictors/`.

A method uses another only through that method's Predictor (the segmentation Predictor finds the heart for ED/ES's
baseline, CUSSP and SSLHF), never through its modules.
"""
