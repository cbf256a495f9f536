"""Shared fixtures: the real-data folder (skips with a reason when absent) and small temp cohorts."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cmrlib.utils import data_root as _data_root

HERE = Path(__file__).resolve().parent
_SIBLING = HERE.parent.parent / "shared" / "data"
LONGEST = "test_notebooks.py"  # the smoke run of every notebook and the tests that reread it
LAST = "test_notebooks_reordered.py"  # every notebook run again on the smoke run, its steps in another order


def pytest_collection_modifyitems(items):
    """The longest file first and the reordered notebooks last: under `make test` (two workers, whole files,
    `--no-loadscope-reorder`) one worker starts the smoke run at once, the other takes the remaining files beside
    it, and whichever is free first reruns the notebooks on the finished smoke run."""
    items.sort(key=lambda item: (item.path.name != LONGEST) + 2 * (item.path.name == LAST))


@pytest.fixture(scope="session")
def smoke_shared(tmp_path_factory):
    """The smoke run of every notebook, made once per test session (the pytest-xdist workers share it under a file
    lock, each session a folder of its own): tests read it and never write into it."""
    from filelock import FileLock

    from cmrlib import runner

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the session's folder, under xdist
    out, done, failed = root / "smoke_shared", root / "smoke_shared.done", root / "smoke_shared.failed"
    with FileLock(str(root / "smoke_shared.lock")):
        if failed.exists():
            pytest.fail(failed.read_text())
        if not done.exists():
            try:
                runner.run("smoke", out=out)
            except runner.NotebookFailed as e:
                failed.write_text(str(e))
                pytest.fail(str(e))
            except BaseException as e:
                failed.write_text(f"the smoke run stopped: {type(e).__name__}: {e}")
                raise
            done.touch()
    return out, json.loads((out / "run.json").read_text())


@pytest.fixture(scope="session")
def smoke_run(smoke_shared, tmp_path_factory):
    """This worker's own copy of the smoke run: its tests run notebooks in it again."""
    shared, record = smoke_shared
    out = tmp_path_factory.mktemp("smoke") / "run"
    shutil.copytree(shared, out, symlinks=True)
    return out, record


def real_data_dir() -> Path | None:
    """$CMRLIB_DATA, else ../shared/data beside the project, else None."""
    p = _data_root() or (_SIBLING if _SIBLING.exists() else None)
    return p if p and p.exists() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data root (ACDC, UK-Biobank-style LAX, MVnet DICOM sample); skip when absent."""
    p = real_data_dir()
    if p is None:
        pytest.skip("real data not found: set CMRLIB_DATA or place shared/data beside the project")
    return p


@pytest.fixture(scope="session")
def acdc_dir(data_dir) -> Path:
    p = data_dir / "acdc" / "training"
    if not p.exists():
        pytest.skip(f"ACDC not found under {data_dir}")
    return p


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """`make test` runs two workers on a 2-core machine: one torch thread each keeps them from oversubscribing."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def broken_run(tmp_path_factory) -> Path:
    """A run whose only predictor is an untrained segmenter (a deliberately broken model): the report's every
    other method says why it is absent."""
    import json

    import torch

    from cmrlib.methods import segmentation
    from cmrlib.models import unet11

    run = tmp_path_factory.mktemp("broken") / "run"
    torch.manual_seed(0)
    nets = {"SAX": unet11(6, width=0.0625).eval(), "LAX": unet11(6, width=0.0625).eval()}
    segmentation.Predictor(nets, provenance=dict(trained_on="phantom")).save(run / "predictors" /
                                                                            "segmentation.predictor")
    (run / "run.json").write_text(json.dumps(dict(profile="smoke")))
    return run


BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")  # Debian's package; never a downloaded build


@pytest.fixture(scope="session")
def browser():
    """Headless system Chromium through Playwright; skip with the reason when either is missing."""
    exe = next((b for b in BROWSERS if Path(b).exists()), None)
    if exe is None:
        pytest.skip("no system Chromium (`apt-get install chromium`; .ci/run installs it when it runs as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (`make install`)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()
