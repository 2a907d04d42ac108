from __future__ import annotations

import ast
import csv
import shutil
from pathlib import Path

import pytest

from llmroute.data.routerbench import NOTE_MULTI, NOTE_REPEATED_ID, SKIP_UNKNOWN, import_routerbench
from llmroute.data.schema import COLUMNS, LogValidationError
from llmroute.data.tokens import count_tokens

TWIN = "arc-challenge.val.174"


def test_import_counts(rb_files: list[Path]) -> None:
    df, report = import_routerbench(rb_files)
    assert report.rows_read == (14 + 10 + 15) * 11
    assert report.skipped == {SKIP_UNKNOWN: 11}
    assert report.rows_kept == len(df) == report.rows_read - 11
    assert report.notes[NOTE_MULTI] == 1 and report.notes[NOTE_REPEATED_ID] == 1
    assert tuple(df.columns) == COLUMNS
    assert set(df["task"]) == {"arc-challenge", "mbpp", "winogrande"}
    assert set(df["source"]) == {"routerbench"} and not df["cost_is_estimated"].any()
    assert df["latency_ms"].isna().all() and set(df["quality"]) <= {0.0, 1.0}


def test_twin_rows_and_two_element_prompt(rb_files: list[Path]) -> None:
    df, _ = import_routerbench(rb_files[:1])
    twin = df[df["prompt_id"] == TWIN]
    assert len(twin) == 11  # 1 model from the two-element row, 10 from its twin
    doubled = twin[twin["model"] == "gpt-3.5-turbo-1106"]["prompt"].iloc[0]
    single = twin[twin["model"] == "gpt-4-1106-preview"]["prompt"].iloc[0]
    assert doubled == single + "\n\n" + single


def test_values_come_from_the_csv(rb_dir: Path) -> None:
    path = rb_dir / "mbpp_train.csv"
    with path.open(newline="") as fh:
        first = next(csv.DictReader(fh))
    df, _ = import_routerbench([path])
    row = df[(df["prompt_id"] == first["sample_id"]) & (df["model"] == "claude-v2")].iloc[0]
    prompt = ast.literal_eval(first["prompt"])[0]
    answer = ast.literal_eval(first["claude-v2|model_response"])[0]
    assert row["prompt"] == prompt and row["response"] == answer
    assert row["quality"] == float(first["claude-v2"])
    assert row["cost_usd"] == float(first["claude-v2|total_cost"])
    assert row["input_tokens"] == count_tokens(prompt) and row["output_tokens"] == count_tokens(answer)


def test_duplicate_pairs_across_files_name_both(rb_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "mbpp_again.csv"
    shutil.copy(rb_dir / "mbpp_train.csv", copy)
    with pytest.raises(LogValidationError) as err:
        import_routerbench([rb_dir / "mbpp_train.csv", copy])
    assert (err.value.file, err.value.row) == (str(copy), 1)
    assert str(rb_dir / "mbpp_train.csv") in str(err.value) and "duplicate" in str(err.value)


def edited(src: Path, dst: Path, row: int, column: str, value: str) -> Path:
    with src.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows[row][rows[0].index(column)] = value  # rows[0] is the header, so data row N is rows[N]
    with dst.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return dst


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("claude-v1", "yes", "correctness score in [0, 1]"),
        ("claude-v1", "1.5", "correctness score in [0, 1]"),
        ("claude-v1|total_cost", "-0.01", "cost in USD >= 0"),
        ("claude-v1|total_cost", "free", "cost in USD >= 0"),
        ("prompt", "['unclosed", "Python list literal"),
        ("prompt", "{'a': 1}", "list of strings"),
        ("claude-v1|model_response", "not a literal", "Python list literal"),
        ("sample_id", "  ", "non-empty"),
    ],
)
def test_bad_cells(rb_dir: Path, tmp_path: Path, column: str, value: str, expected: str) -> None:
    path = edited(rb_dir / "winograde_train.csv", tmp_path / "wino.csv", 4, column, value)
    with pytest.raises(LogValidationError) as err:
        import_routerbench([path])
    assert (err.value.file, err.value.row, err.value.field) == (str(path), 4, column)
    assert f"row 4, field '{column}'" in str(err.value) and expected in str(err.value)


def test_missing_model_column(rb_dir: Path, tmp_path: Path) -> None:
    with (rb_dir / "winograde_train.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    drop = rows[0].index("claude-v1|model_response")
    path = tmp_path / "cut.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([r[:drop] + r[drop + 1 :] for r in rows])
    with pytest.raises(LogValidationError, match="claude-v1\\|model_response") as err:
        import_routerbench([path])
    assert err.value.row is None


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(LogValidationError, match="cannot read") as err:
        import_routerbench([tmp_path / "missing.csv"])
    assert err.value.file == str(tmp_path / "missing.csv")
