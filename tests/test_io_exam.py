"""A scanner's whole exam folder in, the right cines out: every series sorted by a rule a user can read, in each
vendor's naming and with the descriptions stripped, on synthetic exams written with pydicom (`phantom.exam`)."""
from __future__ import annotations

import json
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid

from cmrlib.cli import main
from cmrlib.io import CorruptFileError, IngestError, ingest, read_dicom_series
from cmrlib.io.exam import ROLES, SortError, parse_overrides, what_it_names
from cmrlib.phantom.exam import IDENTITY, VENDORS, write_exam

SMALL = dict(n_frames=12, matrix=48, pixel_mm=3.0)
CINES = {"SAX": 4, "2CH": 6, "3CH": 7, "4CH": 23}  # the series each view must come from (23: the repeated 4CH)
PRIVATE = [v for k, v in IDENTITY.items() if k != "PatientSex"] + ["DOE", "JANE", "ELSEWHERE"]


def shown_text(path) -> str:
    """A written file's text as a reader could find a name in it: each embedded image as its own text chunks (its
    compressed pixels, in base64, can spell any three letters by chance)."""
    import base64
    import io

    from PIL import Image

    def chunks(m: re.Match) -> str:
        info = Image.open(io.BytesIO(base64.b64decode(m.group(1)))).info
        return " ".join(f"{k} {v}" for k, v in info.items() if isinstance(v, str))
    return re.sub(r"base64,([A-Za-z0-9+/=]+)", chunks, path.read_text(errors="ignore"))


@pytest.fixture(scope="module")
def exams(tmp_path_factory):
    """One exam per vendor's naming and one without descriptions, written once for the module."""
    root = tmp_path_factory.mktemp("exams")
    made = {(v, True): write_exam(root / v, v, config=SMALL) for v in VENDORS}
    made["philips", False] = write_exam(root / "anonymous", "philips", descriptions=False, config=SMALL)
    made["siemens", False] = write_exam(root / "anonymous_siemens", "siemens", descriptions=False, config=SMALL)
    return made


def sorted_exam(folder, **kw):
    notes = []
    cines = read_dicom_series(folder, notes=notes, **kw)
    rows = pd.DataFrame([n["series"] for n in notes if n["error"] == "Series"]).set_index("series")
    return cines, rows, [n for n in notes if n["error"] != "Series"]


@pytest.mark.parametrize("vendor, described", [*((v, True) for v in VENDORS), ("philips", False),
                                               ("siemens", False)])
def test_exactly_the_cines_are_chosen_and_every_other_series_has_its_rule(exams, vendor, described):
    cines, rows, others = sorted_exam(exams[vendor, described])
    assert {c.view: c.meta["series_number"] for c in cines} == CINES
    assert len(rows) == 24 and set(rows.role) <= set(ROLES) and rows.reason.str.len().gt(0).all()
    read = rows[rows.role.isin(["cine SAX stack", "cine 2CH", "cine 3CH", "cine 4CH"])]
    assert sorted(read.index) == sorted(CINES.values())
    assert set(rows.loc[[8], "role"]) == {"cine other"}  # the RVOT
    assert set(rows.drop(index=[*CINES.values(), 8]).role) == {"skipped"}
    why = rows.reason.to_dict()
    assert why[5].startswith("a repeated 4CH: series 23") and "flow" in why[9] and "flow" in why[10]
    assert ("Look-Locker" in why[15] and "Look-Locker" in why[16] and "3D" in why[21] and "3D" in why[22]
            and "single phase" in why[19] and "secondary" in why[24])
    assert "survey" in why[1] and "survey" in why[2]
    sax = next(c for c in cines if c.view == "SAX")
    assert sax.pixels.shape[:2] == (SMALL["n_frames"], rows.loc[4, "slices"]) and not others
    if not described:
        assert rows.description.eq("").all() and all(why[n].startswith("geometry") for n in CINES.values())


def test_a_description_is_shown_as_what_the_sorter_read_in_it_never_as_its_text():
    """A description may hold a name the anonymiser left, or a date in any spelling: only what it names is shown."""
    assert what_it_names("4ch_sense DOE JANE 1961-02-03") == "names 4CH"
    assert what_it_names("RT 2CH") == "names a right-heart view" and what_it_names("Qflow_AO_150") == "names flow"
    assert what_it_names("PSIR_sa") == "names late enhancement" and what_it_names("rvot_sense") == "names a right-heart view"
    assert what_it_names("aorta cine") == "names another view" and what_it_names("x\u00e9 DOE") == "names no view"
    assert what_it_names("") == ""


def test_a_sax_stack_split_over_two_series_is_stacked_whole(exams, tmp_path):
    folder = shutil.copytree(exams["ge", True], tmp_path / "split")
    uid, moved = generate_uid(), 0
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        if int(ds.SeriesNumber) == 4 and int(ds.InstanceNumber) > 6 * SMALL["n_frames"]:  # slices 7..
            ds.SeriesInstanceUID, ds.SeriesNumber = uid, 25
            ds.save_as(f, enforce_file_format=True)
            moved += 1
    cines, rows, _ = sorted_exam(folder)
    sax = next(c for c in cines if c.view == "SAX")
    assert moved and rows.loc[25, "role"] == rows.loc[4, "role"] == "cine SAX stack"
    assert sax.pixels.shape[1] == rows.loc[4, "slices"] + rows.loc[25, "slices"]
    assert "stacked with series 4, series 25" in rows.loc[25, "reason"]


def test_a_damaged_series_is_a_note_and_the_others_are_read(exams, tmp_path):
    folder = shutil.copytree(exams["siemens", True], tmp_path / "damaged")
    two_ch = [f for f in sorted(folder.iterdir()) if int(pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber) == 6]
    two_ch[3].write_bytes(two_ch[3].read_bytes()[:-500])  # pixel data cut short
    (folder / "IM_garbage").write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 40)
    cines, rows, others = sorted_exam(folder)
    assert sorted(c.view for c in cines) == ["3CH", "4CH", "SAX"]
    assert rows.loc[6, "role"] == "failed" and "CorruptFileError" in rows.loc[6, "reason"]
    assert [n["error"] for n in others] == ["CorruptFileError"] and re.fullmatch(r"file \d+ of \d+", others[0]["file"])


def test_no_cine_at_all_lists_what_every_series_was(exams, tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    for f in exams["philips", True].iterdir():
        if int(pydicom.dcmread(f, stop_before_pixels=True).SeriesNumber) in (1, 9, 15):
            shutil.copy(f, folder / f.name)
    with pytest.raises(IngestError, match=r"no cine series: series 1: skipped, survey.*series 9: skipped, "
                                          r"phase-contrast.*series 15: skipped, T1/T2 mapping"):
        read_dicom_series(folder)


def test_two_peoples_exams_in_one_folder_are_refused_naming_series_not_people(exams, tmp_path):
    folder = shutil.copytree(exams["philips", True], tmp_path / "two")
    write_exam(tmp_path / "other", "ge", config=SMALL, person=dict(PatientName="ROE^RICHARD", PatientID="PID-1"))
    for f in (tmp_path / "other").iterdir():
        shutil.copy(f, folder / f"B{f.name}")
    with pytest.raises(SortError, match="files of 2 different patients") as e:
        read_dicom_series(folder)
    assert "series 1" in str(e.value) and not [w for w in (*PRIVATE, "ROE", "PID-1") if w in str(e.value)]


def test_a_users_view_overrides_every_rule(exams):
    cines, rows, _ = sorted_exam(exams["philips", False], views={5: "4CH", 8: "skip", 7: "other"})
    assert {c.view: c.meta["series_number"] for c in cines} == {"SAX": 4, "2CH": 6, "4CH": 5}
    assert rows.loc[8, "reason"] == "skipped by --view" and rows.loc[7, "role"] == "cine other"
    assert rows.loc[23, "reason"] == "a repeated 4CH: series 5, named by --view, is read"
    assert parse_overrides(["7=4ch", " 8 = skip"]) == {7: "4CH", 8: "skip"}
    for bad in (["7"], ["x=4CH"], ["7=LVOT"]):
        with pytest.raises(SortError, match="--view"):
            parse_overrides(bad)
    with pytest.raises(SortError, match="no series 99"):
        read_dicom_series(exams["philips", False], views={99: "SAX"})


def redescribe(folder, descriptions: dict[int, str], image_types: dict[int, list[str]] = {}) -> None:  # noqa: B006
    """Give series new descriptions (and image types) in place, as another scanner's protocol names them."""
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        n = int(ds.SeriesNumber)
        if n in descriptions or n in image_types:
            if n in descriptions:
                ds.SeriesDescription = ds.ProtocolName = descriptions[n]
            if n in image_types:
                ds.ImageType = image_types[n]
            ds.save_as(f, enforce_file_format=True)


@pytest.mark.parametrize("right", ["RT 2CH", "RV 2CH", "rv_inflow_cine", "RVOT"])
def test_a_right_heart_view_is_never_the_lv_two_chamber_and_psir_is_late_enhancement(exams, tmp_path, right,
                                                                                     broken_run):
    """An exam with a right-heart two-chamber cine, an RVOT and no LV 2CH; its PSIR holds phase images."""
    folder = shutil.copytree(exams["philips", True], tmp_path / "exam")
    redescribe(folder, {6: right, 8: "RVOT"}, {14: ["ORIGINAL", "PRIMARY", "P", "PSIR"]})
    cines, rows, _ = sorted_exam(folder)
    assert {c.view for c in cines} == {"SAX", "3CH", "4CH"}  # no 2CH chosen, though one plane lies where it would
    assert rows.loc[6, "role"] == "cine other" and "right-heart view" in rows.loc[6, "reason"]
    assert rows.loc[14, "reason"].startswith("late enhancement") and rows.loc[13, "reason"].startswith("late")
    if right == "RT 2CH":
        out = tmp_path / "report"
        assert main(["analyse", str(folder), "--run", str(broken_run), "--out", str(out)]) == 0
        page = (out / "report.html").read_text()
        assert "No LV two-chamber (2CH) cine was read from this exam" in page


def test_files_named_after_the_patient_and_dated_descriptions_never_reach_a_report_or_a_cohort(exams, tmp_path,
                                                                                                broken_run):
    """A PACS export names each file after the patient (`<NAME>_<ID>_MR_<series>_<n>.dcm`); one file is broken;
    descriptions hold the birth date in other spellings: every file written names files by their place."""
    exam = tmp_path / "cohort" / "S01"
    shutil.copytree(exams["philips", True], exam)
    redescribe(exam, {4: "sa_sense 1961-02-03", 6: "2ch_sense 03.02.1961", 8: "rvot_sense DOE JANE"})
    for i, f in enumerate(sorted(exam.iterdir())):
        f.rename(exam / f"DOE_JANE_PID-4455667_MR_{i:05d}.dcm")
    (exam / "DOE_JANE_PID-4455667_MR_broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 64)
    out = tmp_path / "report"
    assert main(["analyse", str(exam), "--run", str(broken_run), "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["skipped_files"] and re.fullmatch(r"file \d+ of \d+", rep["skipped_files"][0]["file"])
    store = ingest("dicom", exam.parent, tmp_path / "store", progress=False)
    assert store.ids()
    written = [p for p in [*out.iterdir(), *(tmp_path / "store").rglob("*.json")] if p.is_file()]
    texts = [shown_text(p) for p in written]
    private = [*PRIVATE, "1961-02-03", "03.02.1961", "DOE_JANE", "PID-4455667"]
    assert not [w for w in private if any(w in t for t in texts)]


def test_one_folder_is_one_person_and_one_study(exams, tmp_path):
    """Another person's 2CH series in the folder (identifiers blank, another study and frame of reference) is set
    aside; files exported twice are read once; a --view naming a flow series as the 4CH leaves the real 4CH read."""
    folder = shutil.copytree(exams["philips", True], tmp_path / "exam")
    study, frame, series = generate_uid(), generate_uid(), generate_uid()
    for i, f in enumerate(sorted(folder.iterdir())):
        ds = pydicom.dcmread(f)
        if int(ds.SeriesNumber) == 6:
            ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SeriesInstanceUID = study, frame, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.SeriesNumber, ds.PatientName, ds.PatientID, ds.PatientBirthDate = 31, "", "", ""
            ds.save_as(folder / f"other_{i:05d}", enforce_file_format=True)
        if int(ds.SeriesNumber) == 7:  # the 3CH, exported twice
            shutil.copy(f, folder / f"twice_{i:05d}")
    cines, rows, others = sorted_exam(folder)
    assert {c.view: c.meta["series_number"] for c in cines} == CINES  # series 6 still the 2CH, 7 the 3CH
    assert rows.loc[31, "role"] == "skipped" and "another study" in rows.loc[31, "reason"]
    assert any(n["error"] == "RepeatedFiles" for n in others)
    taken, rows, _ = sorted_exam(folder, views={31: "2CH"})  # the user may still take it
    assert {c.view: c.meta["series_number"] for c in taken}["2CH"] == 31
    flow, rows, _ = sorted_exam(exams["philips", True], views={9: "4CH"})
    assert {c.view: c.meta["series_number"] for c in flow}["4CH"] == 23 and rows.loc[9, "role"] == "failed"
    assert rows.loc[23, "reason"].startswith("read instead of series 9")


def test_a_vendors_nonconforming_values_are_counted_not_printed(exams, tmp_path, capfd):
    folder = shutil.copytree(exams["philips", True], tmp_path / "vendor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # writing them warns too
        for f in sorted(folder.iterdir()):
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            if int(ds.SeriesNumber) <= 3:  # a leading zero in a UID component, as some vendors write them
                ds = pydicom.dcmread(f)
                ds.SeriesInstanceUID = f"1.3.46.670589.011.0.0.11.4.2.0.8743.5.{int(ds.SeriesNumber)}"
                ds.save_as(f, enforce_file_format=True)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cines, rows, others = sorted_exam(folder)
    assert len(cines) == 4 and not seen and not capfd.readouterr().err
    (counted,) = [n for n in others if n["error"] == "ReaderWarnings"]
    assert re.search(r"warned \d+ time\(s\) about nonconforming values: Invalid value for VR UI", counted["message"])
    assert "670589" not in counted["message"]


def test_analyse_reads_a_mixed_exam_and_shows_every_series_without_identifiers(exams, broken_run, tmp_path):
    from cmrlib import predictor
    from cmrlib.predictor import METHODS, predictor_class

    out = tmp_path / "report"
    assert main(["analyse", str(exams["siemens", True]), "--run", str(broken_run), "--out", str(out)]) == 0
    page, rep = (out / "report.html").read_text(), json.loads((out / "report.json").read_text())
    assert all(predictor_class(m).title in page for m in METHODS)
    assert len(rep["series"]) == 24 and "24 series in the folder, 4 read as cines" in page
    made = predictor.load(broken_run / "predictors" / "segmentation.predictor")  # the weights that made the report
    assert [m["content_key"] for m in rep["methods"] if m["available"]] == [made.content_key()]
    assert sorted(c["view"] for c in rep["cines"]) == ["2CH", "3CH", "4CH", "SAX"]
    assert "names 4CH" in page and "names flow" in page and "cine_trufi_retro_4ch" not in page  # never the text
    texts = [shown_text(p) for p in out.iterdir()]
    assert not [w for w in PRIVATE if any(w in t for t in texts)]


def test_ingest_sorts_each_subjects_exam_and_writes_the_series_into_its_report(exams, tmp_path):
    root = tmp_path / "exams"
    shutil.copytree(exams["siemens", False], root / "s01")
    store = ingest("dicom", root, tmp_path / "cohort", progress=False, views=["8=skip"])
    assert store.ids() == ["s01_2CH", "s01_3CH", "s01_4CH", "s01_SAX"]
    rows = [n["series"] for n in store.report()["notes"] if n["error"] == "Series"]
    assert len(rows) == 24 and {r["series"]: r["reason"] for r in rows}[8] == "skipped by --view"
    assert store.read("s01_4CH").meta["view_from"].startswith("geometry")
    text = (tmp_path / "cohort" / "report.json").read_text()
    assert not [w for w in PRIVATE if w in text]
    np.testing.assert_array_equal(store.read("s01_SAX").pixels.shape[:2], (SMALL["n_frames"], rows[3]["slices"]))


def test_a_dicom_folder_that_is_only_garbage_says_which_file(tmp_path):
    (tmp_path / "IM_1").write_bytes(b"\0" * 128 + b"DICM" + b"\x02" * 10)
    with pytest.raises(CorruptFileError, match="file 1 of 1"):
        read_dicom_series(tmp_path)
