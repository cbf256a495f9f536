"""What the validation screens share: each variant's row printed and appended to OUT/screen.csv as it finishes."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def screen_variants(study, screen, variants: str, out: str) -> None:
    """`screen(study, **variant)` for each variant of the JSON list, its row kept even if a later one fails."""
    path = Path(out) / "screen.csv"
    for v in json.loads(variants):
        row = screen(study, **v)
        print(json.dumps(row), flush=True)
        pd.DataFrame([row]).to_csv(path, mode="a", header=not path.exists(), index=False)
