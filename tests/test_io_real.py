"""One reader of the real subjects under a data root: every notebook's real cines and their references."""
from __future__ import annotations

from cmrlib.io.real import MANUAL, NONE, PSEUDO, real_cines, real_subjects


def test_a_data_root_without_real_subjects_gives_none_and_says_so(tmp_path, capsys):
    assert real_subjects(tmp_path, ("SAX", "4CH")) == []
    assert "no real SAX/4CH cine under the data root" in capsys.readouterr().out


def test_the_shared_data_gives_each_source_with_its_reference(data_dir):
    subjects = {s.name: s for s in real_subjects(data_dir, ("SAX", "2CH", "4CH"))}
    demo = [s for s in subjects.values() if s.reference_is == PSEUDO]
    assert len(demo) == 2 and all({c.view for c in s.cines} == {"2CH", "4CH"} for s in demo)
    assert all("LVEF" in s.reference for s in demo)
    acdc = [s for s in subjects.values() if s.reference_is == MANUAL]
    assert acdc and all(s.name.startswith("ACDC patient") and s.cines[0].view == "SAX" for s in acdc)
    assert all(s.reference_is == NONE for s in subjects.values() if s.name == "DICOM")
    four = real_cines(data_dir, ("4CH",))
    assert all(c.view == "4CH" for _, c in four) and "DICOM 4CH" in {n for n, _ in four}
    labelled = real_cines(data_dir, ("2CH", "4CH"), labelled=True)
    assert labelled and all(c.labels is not None for _, c in labelled)
