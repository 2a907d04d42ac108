from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from llmroute.data.long_format import import_long
from llmroute.data.routerbench import import_routerbench
from llmroute.data.schema import LogValidationError


@pytest.fixture
def logs(rb_dir: Path) -> pd.DataFrame:
    df, _ = import_routerbench([rb_dir / "winograde_train.csv"])
    df = df.head(30).copy()
    stamps = pd.date_range("2024-06-01 12:00", periods=len(df), freq="min", tz="UTC")
    df["created_at"] = pd.Series(stamps, index=df.index).astype("datetime64[ns, UTC]")
    return df


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, date_format="iso")
    else:
        df.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("name", ["logs.csv", "logs.jsonl", "logs.parquet"])
def test_round_trip(logs: pd.DataFrame, tmp_path: Path, name: str) -> None:
    df, report = import_long([write(logs, tmp_path / name)])
    assert report.rows_read == report.rows_kept == 30 and report.skipped == {}
    pd.testing.assert_frame_equal(df, logs.reset_index(drop=True))


def test_several_files_and_extra_columns(logs: pd.DataFrame, tmp_path: Path) -> None:
    a = write(logs.head(10).assign(note="x"), tmp_path / "a.csv")
    b = write(logs.iloc[10:], tmp_path / "b.parquet")
    df, report = import_long([a, b])
    assert len(df) == 30 and "note" not in df.columns
    assert report.notes == {"columns outside the schema, ignored (note)": 1}


def test_csv_row_numbers_exclude_header(logs: pd.DataFrame, tmp_path: Path) -> None:
    bad = logs.copy()
    bad.loc[2, "quality"] = 1.5
    path = write(bad, tmp_path / "bad.csv")
    with pytest.raises(LogValidationError) as err:
        import_long([path])
    assert (err.value.file, err.value.row, err.value.field) == (str(path), 3, "quality")


def test_jsonl_row_numbers_are_line_numbers(logs: pd.DataFrame, tmp_path: Path) -> None:
    bad = logs.copy()
    bad["cost_usd"] = bad["cost_usd"].astype("float64")
    bad.loc[1, "cost_usd"] = -1.0
    path = write(bad, tmp_path / "bad.jsonl")
    path.write_text("\n" + path.read_text())  # a blank first line: the bad record is now on line 3
    with pytest.raises(LogValidationError) as err:
        import_long([path])
    assert (err.value.row, err.value.field) == (3, "cost_usd")


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"prompt_id": "a"}\n[1, 2]\n')
    with pytest.raises(LogValidationError) as err:
        import_long([path])
    assert (err.value.file, err.value.row) == (str(path), 2)


def test_missing_column_names_file(logs: pd.DataFrame, tmp_path: Path) -> None:
    path = write(logs.drop(columns=["model"]), tmp_path / "nomodel.parquet")
    with pytest.raises(LogValidationError) as err:
        import_long([path])
    assert (err.value.file, err.value.field) == (str(path), "model")


def test_duplicate_across_files(logs: pd.DataFrame, tmp_path: Path) -> None:
    a = write(logs.head(5), tmp_path / "a.csv")
    b = write(logs.iloc[3:8], tmp_path / "b.jsonl")
    with pytest.raises(LogValidationError) as err:
        import_long([a, b])
    assert (err.value.file, err.value.row) == (str(b), 1)
    assert f"{a}, row 4" in str(err.value)


def test_bad_extension_and_unreadable(tmp_path: Path) -> None:
    txt = tmp_path / "logs.txt"
    txt.write_text("x")
    with pytest.raises(LogValidationError, match=r"unknown file extension '\.txt'") as err:
        import_long([txt])
    assert err.value.file == str(txt)
    with pytest.raises(LogValidationError, match="cannot read") as err:
        import_long([tmp_path / "missing.parquet"])
    assert err.value.file == str(tmp_path / "missing.parquet")


def test_empty_jsonl_gives_empty_frame(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    df, report = import_long([path])
    assert df.empty and report.rows_read == 0


@pytest.mark.parametrize("name", ["logs.csv", "logs.jsonl", "logs.parquet"])
def test_empty_quality_is_an_unknown_outcome_skipped_and_counted(logs: pd.DataFrame, tmp_path: Path, name: str) -> None:
    """Defect 9: an empty quality failed a long-format file though empty means unknown."""
    frame = logs.copy()
    frame["quality"] = frame["quality"].astype(object)
    frame.loc[frame.index[[2, 5]], "quality"] = None
    df, report = import_long([write(frame, tmp_path / name)])
    assert report.rows_read == 30 and report.rows_kept == 28
    assert report.skipped == {"quality empty: outcome unknown": 2}
    assert len(df) == 28 and df["quality"].notna().all()


def test_source_may_be_left_out(logs: pd.DataFrame, tmp_path: Path) -> None:
    """Defect 9: the long format required `source` without the README saying so; it defaults now."""
    df, report = import_long([write(logs.drop(columns=["source"]), tmp_path / "mine.csv")])
    assert set(df["source"]) == {"mine.csv"}
    assert report.notes == {"rows without a source column: source set to the file's name": 30}


def test_errors_show_plain_values_not_numpy_reprs(logs: pd.DataFrame, tmp_path: Path) -> None:
    bad = logs.copy()
    bad.loc[bad.index[3], "quality"] = 1.5
    with pytest.raises(LogValidationError) as exc:
        import_long([write(bad, tmp_path / "bad.parquet")])
    msg = str(exc.value)
    assert "row 4" in msg and "quality" in msg and "expected a number in [0, 1], got 1.5" in msg
    assert "np." not in msg
