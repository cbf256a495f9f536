"""The methods, one package each, with the same shape: `learner` (building and training), `predict` (a trained
model on a cine), `evaluate` (tables against a reference), `figures` (figures from tables), plus what only that
method needs (`data` for its own feed, `geometry`, `curves`). A method uses another only through that method's
`predict` (ED/ES's segmentation baseline calls `segmentation.predict`), never through its files."""
