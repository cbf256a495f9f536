"""The canonical record, label conventions and cohort store: round trips, atomicity, typed errors."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cmrlib import labels as L
from cmrlib.record import Cine, RecordError
from cmrlib.store import CohortStore, StoreError
from cmrlib.utils import atomic_dir, peak_rss_mib, seed_everything


def cine(subject="s1", view="SAX", t=4, **kw):
    shape = (t, 3, 6, 7) if view == "SAX" else (t, 6, 7)
    spacing = (10.0, 1.5, 1.5) if view == "SAX" else (1.5, 1.5)
    r = np.random.default_rng(0)
    base = dict(pixels=r.random(shape), spacing=spacing, frame_times=np.arange(t) * 33.0,
                labels=r.integers(0, 4, shape), ed=0, es=2, meta={"group": "NOR", "lv_edv_ml": 120.5})
    base.update(kw)
    return Cine(subject, view, **base)


def test_round_trip_preserves_everything(tmp_path):
    s = CohortStore(tmp_path)
    c = cine(landmarks={}, view="4CH")
    c.landmarks = {"truth": np.ones((4, 2, 2), np.float32)}
    s.write(c)
    r = s.read(c.cine_id)
    assert np.array_equal(r.pixels, c.pixels) and np.array_equal(r.labels, c.labels)
    assert r.spacing == c.spacing and (r.ed, r.es) == (0, 2) and r.meta == c.meta
    assert np.array_equal(r.landmarks["truth"], c.landmarks["truth"])


@pytest.mark.parametrize("pixels, stored, scale", [
    (np.arange(24.0).reshape(4, 6) / 512, np.uint16, 1 / 512),  # the phantom's quantised magnitudes
    (np.arange(24.0).reshape(4, 6) * 100, np.uint16, 1.0),      # integer scanner magnitudes
    (np.linspace(-1, 1, 24).reshape(4, 6), np.float32, None),   # negative / non-quantised: kept as float
    (np.full((4, 6), 70000.0), np.float32, None),               # beyond uint16
])
def test_pixels_packed_losslessly(tmp_path, pixels, stored, scale):
    s = CohortStore(tmp_path)
    c = cine(view="4CH", pixels=pixels[:, None, :].repeat(7, 1).reshape(4, 6, 7), labels=None)
    s.write(c)
    g = s.group(c.cine_id)
    assert g["pixels"].dtype == stored and g.attrs["pixel_scale"] == scale
    r = s.read(c.cine_id)
    assert r.pixels.dtype == np.float32 and np.array_equal(r.pixels, c.pixels)


def test_a_chunk_holds_whole_frames_up_to_its_size_and_a_frame_a_chunk_still_reads(tmp_path, monkeypatch):
    from cmrlib import store as S

    s = CohortStore(tmp_path)
    small = cine(landmarks={"truth": np.ones((4, 2, 2), np.float32)})
    s.write(small)
    assert s.group(small.cine_id)["pixels"].chunks == (4, 3, 6, 7)  # a small cine is one chunk
    frame = s.group(small.cine_id)["pixels"].dtype.itemsize * 3 * 6 * 7  # bytes of one stored frame
    monkeypatch.setattr(S, "CHUNK_BYTES", 3 * frame - 1)  # two frames of pixels fit, not three
    s.write(small, overwrite=True)
    assert s.group(small.cine_id)["pixels"].chunks == (2, 3, 6, 7)
    monkeypatch.setattr(S, "CHUNK_BYTES", 1)  # a frame bigger than a chunk is a chunk of its own
    s.write(small, overwrite=True)
    assert s.group(small.cine_id)["pixels"].chunks == (1, 3, 6, 7)
    assert s.group(small.cine_id)["pixels"].nchunks == 4
    r = s.read(small.cine_id, frames=[1, 2])
    assert np.array_equal(r.labels, small.labels[1:3]) and np.array_equal(r.landmarks["truth"], np.ones((2, 2, 2)))
    assert s.lazy(small.cine_id).chunks[0] == (1,) * 4


def test_frame_subset_reindexes_ed_es(tmp_path):
    s = CohortStore(tmp_path)
    s.write(cine())
    r = s.read("s1_SAX", frames=[2, 3])
    assert r.n_frames == 2 and r.ed is None and r.es == 0


def test_manifest_has_split_and_flat_meta(tmp_path):
    s = CohortStore(tmp_path)
    s.write(cine("a"))
    s.write(cine("b", view="2CH"))
    s.write_splits({"a": "train", "b": "test"})
    m = s.manifest(refresh=True).set_index("cine_id")
    assert m.loc["a_SAX", "split"] == "train" and m.loc["b_2CH", "n_slices"] == 1
    assert m.loc["a_SAX", "lv_edv_ml"] == 120.5
    assert s.select(view="2CH") == ["b_2CH"] and s.select(split="train") == ["a_SAX"]
    with pytest.raises(ValueError, match="unknown split"):
        s.write_splits({"a": "training"})


def test_manifest_appends_parts_and_follows_the_disk(tmp_path, monkeypatch):
    monkeypatch.setattr("cmrlib.store.STAMP_SETTLE_NS", 0)  # trust the folder time at once (no 2 s wait)
    s = CohortStore(tmp_path)
    s.write(cine("a"))
    s.write(cine("b", meta={"group": 3}))  # a metadata column mixing text and numbers
    assert list(s.manifest()["cine_id"]) == ["a_SAX", "b_SAX"]
    s.write(cine("c", view="4CH"))
    s.append_manifest(["c_4CH"])  # what a batch job does: a part for the new cines, nothing rewritten
    assert len(s._parts()) == 2 and list(s.manifest()["cine_id"]) == ["a_SAX", "b_SAX", "c_4CH"]
    s.write(cine("d"))  # written by someone who did not append: found from the folder's change
    assert list(s.manifest(columns=["cine_id", "view"]).columns) == ["cine_id", "view"]
    assert "d_SAX" in s.select(view="SAX") and len(s._parts()) == 3
    shutil.rmtree(s.path("a_SAX"))
    m = s.manifest()
    assert list(m["cine_id"]) == ["b_SAX", "c_4CH", "d_SAX"] and len(s._parts()) == 1
    assert m.set_index("cine_id").loc["b_SAX", "group"] == "3"
    s.write_splits({"b": "train", "c": "test", "d": "valid"})  # a new split is joined when read, no rewrite
    assert s.select(split="test") == ["c_4CH"] and len(s._parts()) == 1


def test_interrupted_write_leaves_nothing_visible(tmp_path):
    s = CohortStore(tmp_path)
    with pytest.raises(RuntimeError):
        with atomic_dir(s.path("x_SAX")) as tmp:
            tmp.mkdir()
            (tmp / "partial").write_text("half")
            raise RuntimeError("killed")
    assert s.ids() == [] and list(s.cines_dir.iterdir()) == []


def test_existing_cine_is_skipped_unless_overwrite(tmp_path):
    s = CohortStore(tmp_path)
    s.write(cine())
    s.write(cine(meta={"changed": True}))
    assert "changed" not in s.read("s1_SAX").meta
    s.write(cine(meta={"changed": True}), overwrite=True)
    assert s.read("s1_SAX").meta == {"changed": True}


def test_missing_cine_is_a_typed_error(tmp_path):
    with pytest.raises(StoreError, match="nope"):
        CohortStore(tmp_path).read("nope")


@pytest.mark.parametrize("bad, match", [
    (dict(view="5CH"), "unknown view"),
    (dict(spacing=(1.0, 1.0)), "spacing"),
    (dict(frame_times=np.arange(3)), "frame_times"),
    (dict(labels=np.zeros((4, 3, 6, 8))), "labels shape"),
    (dict(es=9), "es=9"),
])
def test_record_rejects_inconsistent_fields(bad, match):
    kw = dict(bad)
    view = kw.pop("view", "SAX")
    with pytest.raises(RecordError, match=match):
        cine(view=view, **kw)


@pytest.mark.parametrize("source, raw, canon", [
    ("acdc", [0, 1, 2, 3], [L.BG, L.RV, L.MYO, L.LV]),
    ("mnms", [0, 1, 2, 3], [L.BG, L.LV, L.MYO, L.RV]),
    ("mnms2", [0, 1, 2, 3], [L.BG, L.LV, L.MYO, L.RV]),
    ("ukbb_la_4ch", [4, 5], [L.LA, L.RA]),
])
def test_source_conventions(source, raw, canon):
    assert L.to_canonical(np.array(raw), source).tolist() == canon


def test_unknown_label_value_names_file_and_values():
    with pytest.raises(L.LabelError, match=r"p1_gt.nii.gz: label values \[7\]"):
        L.to_canonical(np.array([0, 1, 7]), "acdc", where="p1_gt.nii.gz")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux-only")
def test_peak_rss_is_the_child_process_own_not_the_parent_s():
    hold = np.ones(128 * 2**20 // 8)  # keep 128 MiB resident in this (parent) process
    parent = peak_rss_mib()
    code = "from cmrlib.utils import peak_rss_mib; print(peak_rss_mib())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert hold.sum() > 0 and 0 < child < parent - 100  # ru_maxrss would report the parent's peak here


def test_seed_everything_repeats_draws():
    seed_everything(3)
    a = (np.random.rand(3), torch.rand(3))
    seed_everything(3)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_stratified_split_proportional_deterministic_never_empty():
    from collections import Counter

    from cmrlib.store import stratified_split

    strata = {f"s{i:03d}": "ABC"[i % 3] for i in range(60)}
    a = stratified_split(strata, seed=1)
    assert a == stratified_split(strata, seed=1) and a != stratified_split(strata, seed=2)
    assert set(a) == set(strata)
    for g in "ABC":
        n = Counter(a[s] for s in strata if strata[s] == g)
        assert (n["train"], n["valid"], n["test"]) == (14, 3, 3)
    for n in (3, 4, 5):  # tiny cohorts, every subject its own stratum: valid and test still get one
        small = stratified_split({f"x{i}": str(i) for i in range(n)}, seed=0)
        assert {"valid", "test"} <= set(small.values())


def test_select_by_views_splits_limit_and_interleave(tmp_path):
    store = CohortStore(tmp_path)
    for i in range(4):
        for view in ("SAX", "4CH"):
            store.write(cine(subject=f"s{i}", view=view))
    store.write_splits({"s0": "train", "s1": "train", "s2": "valid", "s3": "test"})
    assert store.select("4CH", "train") == ["s0_4CH", "s1_4CH"]
    assert store.select(["SAX", "4CH"], ["train", "valid"], limit=2) == ["s0_SAX", "s1_SAX", "s0_4CH", "s1_4CH"]
    assert store.select(["SAX", "4CH"], "train", interleave=True) == ["s0_SAX", "s0_4CH", "s1_SAX", "s1_4CH"]
    assert store.select(split="test") == ["s3_4CH", "s3_SAX"] and store.select(limit=1) == ["s0_4CH"]
