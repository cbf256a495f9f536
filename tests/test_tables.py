"""The one reader of a user's tables: regular files of bounded size only, typed columns, the first bad cell named
by file and line, conflicting duplicates refused, and no folder name or subject value in a message."""
from __future__ import annotations

import os

import numpy as np
import pytest

from cmrlib import tables as T
from cmrlib.tables import TableError, read_table

LABELS = {"subject": T.subject, "mr": T.zero_one}


def write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reads_typed_columns_and_drops_exact_repeats(tmp_path):
    f = write(tmp_path / "labels.csv", "subject, mr, note\nsub01,1,x\nsub02,0,y\nsub01,1,x\nsub03,,z\n")
    tab = read_table(f, LABELS, required=("subject", "mr"))
    assert tab.subject.tolist() == ["sub01", "sub02", "sub03"] and list(tab.columns) == ["subject", "mr"]
    assert tab.mr.tolist()[:2] == [1.0, 0.0] and np.isnan(tab.mr.iloc[2])
    extra = read_table(f, {"subject": T.subject}, extra=None)
    assert list(extra.columns) == ["subject"]


@pytest.mark.parametrize("text, message", [
    ("subject,mr\na,1\nb,2\n", "line 3, column mr: not 0 or 1$"),
    ("subject,mr\na,1\nb,inf\n", "line 3, column mr: not a finite number$"),
    ("subject,mr\na,1\nb,DOE^JANE\n", "line 3, column mr: not a number$"),
    ("subject,mr\na,1\n,0\n", "line 3, column subject: an empty subject"),
    ("subject\na\n", r"line 1 \(the header, 1 columns\) lacks the column\(s\) \['mr'\]"),
    ("subject,mr,mr\na,1,1\n", "not a CSV table|line 1, columns 2 and 3 have the same name"),
    ("", "not a CSV table"),
])
def test_the_first_bad_cell_is_named_by_file_line_and_column(tmp_path, text, message):
    f = write(tmp_path / "t.csv", text)
    with pytest.raises(TableError, match=message):
        read_table(f, LABELS, required=("subject", "mr"), what="MR labels table")


def test_a_table_without_its_header_never_shows_its_first_row(tmp_path):
    """A table whose header row is missing has a patient's row where the column names should be: the message names
    the line and what is missing, never those cells."""
    f = write(tmp_path / "t.csv", "PAT001,DOE^JANE,1\nPAT002,ROE^RICHARD,0\n")
    with pytest.raises(TableError) as err:
        read_table(f, LABELS, required=("subject", "mr"))
    assert "line 1" in str(err.value) and not [w for w in ("PAT00", "DOE", "JANE", "ROE") if w in str(err.value)]
    f = write(tmp_path / "u.csv", "subject,PAT001,PAT001\na,1,1\n")
    with pytest.raises(TableError) as err:
        read_table(f, LABELS, required=("subject",), extra=T.number)
    assert "PAT001" not in str(err.value)
    f = write(tmp_path / "v.csv", "subject,DOE^JANE\na,x\n")
    with pytest.raises(TableError, match="line 2, column 2: not a number$"):
        read_table(f, LABELS, required=("subject",), extra=T.number)


def test_one_subject_with_two_different_labels_is_refused_naming_lines_not_the_subject(tmp_path):
    f = write(tmp_path / "t.csv", "subject,mr\nsub07,0\nDOE^JANE,1\nsub09,0\nDOE^JANE,0\n")
    with pytest.raises(TableError) as err:
        read_table(f, LABELS, required=("subject", "mr"))
    assert "lines 3 and 5 give the same subject different values" in str(err.value)
    assert "DOE" not in str(err.value)


def test_devices_pipes_folders_and_huge_files_are_refused_without_reading_them(tmp_path, monkeypatch):
    with pytest.raises(TableError, match="zero: not a regular file"):
        read_table("/dev/zero", LABELS)
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(TableError, match="pipe.csv: not a regular file"):
        read_table(fifo, LABELS)  # opening a FIFO for reading would block
    with pytest.raises(TableError, match="not a regular file"):
        read_table(tmp_path, LABELS)
    with pytest.raises(TableError, match="nope.csv: not found"):
        read_table(tmp_path / "nope.csv", LABELS)
    monkeypatch.setattr(T, "MAX_TABLE_BYTES", 100)
    with pytest.raises(TableError, match="larger than"):
        read_table(write(tmp_path / "big.csv", "subject,mr\n" + "a,1\n" * 40), LABELS)
    bad = tmp_path / "latin.csv"
    bad.write_bytes("subject,mr\nM\xfcller,1\n".encode("latin-1"))
    with pytest.raises(TableError, match="latin.csv: line 2: not UTF-8 text"):
        read_table(bad, LABELS)


def test_messages_name_the_file_never_its_folder(tmp_path):
    f = write(tmp_path / "DOE^JANE_ID-998877" / "labels_04.csv", "subject,mr\na,7\n")
    with pytest.raises(TableError) as err:
        read_table(f, LABELS, required=("subject", "mr"))
    assert "labels_04.csv" in str(err.value) and "998877" not in str(err.value) and "DOE" not in str(err.value)
