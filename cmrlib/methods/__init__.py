"""The methods, one package each, with the same verbs and modules.

Verbs (each package's `__init__` exports them): `dataloaders` (the method's feed), `learner` (a fastai Learner),
`fit` (train; returns the learner or model), `load` (a model exported with `cmrlib.learn.export`), `predict` (a
trained model on one `Cine`) and `evaluate` (tidy DataFrames against the reference: per cine or frame, and per
subject with `<measure>_<source>` columns where a method measures). Modules: `learner`, `predict`, `evaluate`,
`figures` (figures from those tables), plus what only that method needs (`data`, `geometry`, `curves`).

A method uses another only through that method's `predict` (ED/ES's segmentation baseline calls
`segmentation.predict`), never through its files.
"""
