from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmroute.data import validate
from llmroute.data.importers import read_logs
from llmroute.data.schema import COLUMNS, DTYPES, LogValidationError
from llmroute.data.validate import _blank, ensure_unique_pairs, validate_logs, validate_sources


def frame(n: int = 3, **overrides: list[Any]) -> pd.DataFrame:
    data: dict[str, list[Any]] = {
        "prompt_id": [f"p{i}" for i in range(n)],
        "prompt": [f"question {i}" for i in range(n)],
        "model": ["m"] * n,
        "quality": [1.0] * n,
        "source": ["test"] * n,
    }
    data.update(overrides)
    return pd.DataFrame(data)


def test_valid_frame_gets_schema_columns_and_dtypes() -> None:
    out = validate_logs(frame(cost_usd=["0.5", None, "1"]), "logs.csv")
    assert tuple(out.columns) == COLUMNS
    assert {c: str(out[c].dtype) for c in COLUMNS} == {c: str(pd.Series(dtype=DTYPES[c]).dtype) for c in COLUMNS}
    assert out["cost_is_estimated"].tolist() == [False, False, False]
    assert out["cost_usd"].isna().tolist() == [False, True, False]
    assert out["latency_ms"].isna().all() and out["created_at"].isna().all()


def test_columns_outside_schema_are_dropped() -> None:
    out = validate_logs(frame(extra=[1, 2, 3]), "x")
    assert "extra" not in out.columns


def test_missing_columns_are_named() -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame().drop(columns=["quality", "model"]), "logs.csv")
    e = err.value
    assert (e.file, e.row) == ("logs.csv", None)
    assert "model" in str(e) and "quality" in str(e) and str(e).startswith("logs.csv")


@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_quality_out_of_range(bad: float) -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(quality=[1.0, 0.0, bad]), "logs.csv")
    assert (err.value.file, err.value.row, err.value.field) == ("logs.csv", 3, "quality")
    assert "logs.csv, row 3, field 'quality'" in str(err.value) and "[0, 1]" in str(err.value)


def test_quality_not_a_number() -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(quality=["1", "good", "0"]), "f.jsonl")
    assert (err.value.row, err.value.field) == (2, "quality")
    assert "expected a number" in str(err.value)


def test_negative_cost() -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(cost_usd=[0.1, -0.01, 0.2]), "logs.parquet")
    assert (err.value.file, err.value.row, err.value.field) == ("logs.parquet", 2, "cost_usd")
    assert ">= 0" in str(err.value)


@pytest.mark.parametrize("col", ["input_tokens", "output_tokens", "latency_ms"])
def test_negative_tokens_and_latency(col: str) -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(**{col: [1, 2, -3]}), "logs.csv")
    assert (err.value.row, err.value.field) == (3, col)


def test_fractional_token_count() -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(input_tokens=["3", "4.5", None]), "logs.csv")
    assert (err.value.row, err.value.field) == (2, "input_tokens")
    assert "whole number" in str(err.value)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_text_must_be_present(value: Any) -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(prompt=["a", value, "c"]), "logs.csv")
    assert (err.value.row, err.value.field) == (2, "prompt")


def test_missing_quality_value() -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(quality=[1.0, None, 0.0]), "logs.csv")
    assert (err.value.row, err.value.field) == (2, "quality")


def test_duplicate_pair_names_both_rows() -> None:
    df = frame(4, prompt_id=["a", "b", "c", "b"])
    with pytest.raises(LogValidationError) as err:
        validate_logs(df, "logs.csv")
    assert (err.value.file, err.value.row, err.value.field) == ("logs.csv", 4, "(prompt_id, model)")
    assert "first seen at row 2" in str(err.value) and "'b'" in str(err.value)


def test_same_prompt_for_two_models_is_fine() -> None:
    out = validate_logs(frame(2, prompt_id=["a", "a"], model=["m1", "m2"]), "x")
    assert len(out) == 2


def test_row_numbers_are_reported_as_given() -> None:
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(quality=[1, 2, 0]), "f.jsonl", row_numbers=[3, 5, 9])
    assert err.value.row == 5


def test_cost_is_estimated_parsing() -> None:
    out = validate_logs(frame(cost_is_estimated=["True", "false", "1"]), "x.csv")
    assert out["cost_is_estimated"].tolist() == [True, False, True]
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(cost_is_estimated=[True, "maybe", False]), "x.csv")
    assert (err.value.row, err.value.field) == (2, "cost_is_estimated")


def test_created_at_parsing() -> None:
    out = validate_logs(frame(created_at=["2024-05-01T10:00:00Z", None, "2024-05-01 12:00:00"]), "x")
    assert str(out["created_at"].dtype) == "datetime64[ns, UTC]"
    assert out["created_at"].iloc[2] == pd.Timestamp("2024-05-01 12:00:00", tz="UTC")
    with pytest.raises(LogValidationError) as err:
        validate_logs(frame(created_at=["2024-05-01", "yesterday", None]), "x")
    assert (err.value.row, err.value.field) == (2, "created_at")


def test_validate_sources_and_cross_file_duplicates() -> None:
    df = frame(4, prompt_id=["a", "b", "a", "c"])
    with pytest.raises(LogValidationError) as err:
        validate_sources(df, ["one.csv", "one.csv", "two.csv", "two.csv"], [1, 2, 1, 2])
    assert (err.value.file, err.value.row) == ("two.csv", 1)
    assert "one.csv, row 1" in str(err.value)
    with pytest.raises(LogValidationError) as err:
        validate_sources(frame(quality=[1, 0, 7]), ["a", "b", "b"], [10, 20, 30])
    assert (err.value.file, err.value.row) == ("b", 30)


def test_ensure_unique_pairs_passes_on_unique() -> None:
    ensure_unique_pairs(frame(), ["f"] * 3, [1, 2, 3])


def test_text_read_from_parquet_stays_in_arrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Text columns as Parquet reads them are validated in Arrow buffers, never turned into one Python
    string per row (a million prompts took ~4 GiB more that way): validating 10 MB of prompts allocates
    well under 1 MB of Python objects; text from other sources ends up with the same dtype."""
    path = tmp_path / "logs.parquet"
    n = 2_000
    frame(n, prompt=[f"{i} " + "word " * 1_000 + "\n" for i in range(n)]).to_parquet(path, index=False)
    read = pd.read_parquet(path)
    monkeypatch.setattr(validate, "BLANK_CHUNK", 100)  # the blank check's transient strings: 100 at a time
    tracemalloc.start()
    try:
        out = validate_logs(read, str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"validating {n} prompts of 5 kB allocated {peak:,} bytes of Python objects"
    assert out["prompt"].iloc[7] == read["prompt"].iloc[7]
    for df in (out, read_logs(path), validate_logs(frame(), "x")):
        for col in ("prompt_id", "prompt", "model", "task", "response", "source"):
            assert df[col].dtype == pd.StringDtype("pyarrow"), col


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u00a0", "\u2003 \r"])
def test_whitespace_only_text_is_blank(text: str) -> None:
    with pytest.raises(LogValidationError, match="non-empty text") as err:
        validate_logs(frame(prompt=["q", text, "r"]), "logs.csv")
    assert err.value.row == 2 and err.value.field == "prompt"


def test_blank_matches_strip_over_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = pd.Series(["a", " ", "", " b ", "\u3000", "\x1f", "x\n"] * 5, dtype="string[pyarrow]")
    monkeypatch.setattr(validate, "BLANK_CHUNK", 3)  # several chunks, the last one short
    got = _blank(texts)
    assert got.tolist() == [t.strip() == "" for t in texts]
