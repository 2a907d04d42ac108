from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from llmroute.data.catalog import Catalog, load_catalog
from llmroute.data.llmrouter import (
    DEFAULT_ASSUMED_OUTPUT_TOKENS,
    NOTE_AMBIGUOUS,
    NOTE_NO_MODEL,
    NOTE_NO_TASK,
    SKIP_NULL,
    SKIP_REPEAT,
    import_llmrouter,
    prompt_id_for,
)
from llmroute.data.schema import COLUMNS, LogValidationError
from llmroute.data.tokens import count_tokens

DOG = "Which of the following is a trait that a dog does NOT inherit from its parents?"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def items(lr_dir: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((lr_dir / "scores.json").read_text())
    return data


def write_scores(path: Path, data: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_import_counts_and_tasks(lr_dir: Path, catalog: Catalog) -> None:
    df, report = import_llmrouter([lr_dir / "scores.json"], [lr_dir / "queries.jsonl"], catalog)
    assert report.rows_read == report.rows_kept == len(df) == 20 * 9
    assert report.skipped == {}
    assert report.notes == {NOTE_NO_TASK: 9, NOTE_AMBIGUOUS: 9}
    assert tuple(df.columns) == COLUMNS
    first = items(lr_dir)[0]["question"]
    assert df[df["prompt"] == first]["task"].isna().all()
    assert df[df["prompt"].str.startswith(DOG)]["task"].isna().all()
    assert df["task"].notna().sum() == 18 * 9
    assert df["prompt_id"].nunique() == 20


def test_prompt_id_is_stable(lr_dir: Path, catalog: Catalog) -> None:
    df, _ = import_llmrouter([lr_dir / "scores.json"], [], catalog)
    q = df["prompt"].iloc[0]
    assert df["prompt_id"].iloc[0] == prompt_id_for(q)
    assert prompt_id_for("hello") == "llmrouter:aaf4c61ddcc5e8a2"


def test_cost_is_estimated_from_catalog(lr_dir: Path, catalog: Catalog) -> None:
    df, _ = import_llmrouter([lr_dir / "scores.json"], [lr_dir / "queries.jsonl"], catalog, assumed_output_tokens=100)
    row = df[df["model"] == "gemma-2-9b-it"].iloc[0]
    tokens = count_tokens(row["prompt"])
    assert row["input_tokens"] == tokens
    assert row["cost_usd"] == pytest.approx((tokens * 0.1 + 100 * 0.1) / 1e6)
    assert df["cost_is_estimated"].all() and df["output_tokens"].isna().all() and df["response"].isna().all()
    default, _ = import_llmrouter([lr_dir / "scores.json"], [], catalog)
    assert default["cost_usd"].iloc[0] > 0 and DEFAULT_ASSUMED_OUTPUT_TOKENS == 256


def test_repeated_question_with_identical_scores_is_skipped(lr_dir: Path, tmp_path: Path, catalog: Catalog) -> None:
    copy = tmp_path / "again.json"
    shutil.copy(lr_dir / "scores.json", copy)
    df, report = import_llmrouter([lr_dir / "scores.json", copy], [], catalog)
    assert report.rows_read == 2 * 180 and report.rows_kept == len(df) == 180
    assert report.skipped == {SKIP_REPEAT: 180}


def test_repeated_question_with_different_scores_is_an_error(lr_dir: Path, tmp_path: Path, catalog: Catalog) -> None:
    data = items(lr_dir)
    changed = [data[0], {**data[3], "scores": {**data[3]["scores"], "gemma-2-9b-it": 0.5}}]
    other = write_scores(tmp_path / "test.json", changed)
    with pytest.raises(LogValidationError) as err:
        import_llmrouter([lr_dir / "scores.json", other], [], catalog)
    assert (err.value.file, err.value.row, err.value.field) == (str(other), 2, "question")
    assert f"{lr_dir / 'scores.json'}, item 4" in str(err.value)


def test_null_score_is_skipped_and_unknown_model_has_no_cost(lr_dir: Path, tmp_path: Path, catalog: Catalog) -> None:
    data = items(lr_dir)[:2]
    data[0]["scores"]["gemma-2-9b-it"] = None
    data[1]["scores"]["brand-new-model"] = 1.0
    path = write_scores(tmp_path / "s.json", data)
    df, report = import_llmrouter([path], [], catalog)
    assert report.rows_read == 19 and report.rows_kept == 18 and report.skipped == {SKIP_NULL: 1}
    assert report.notes[NOTE_NO_MODEL] == 1
    new = df[df["model"] == "brand-new-model"].iloc[0]
    assert new["cost_usd"] != new["cost_usd"] and not new["cost_is_estimated"]  # NaN: unknown


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"scores": {"gemma-2-9b-it": 1.2}}, "scores.gemma-2-9b-it", "score in [0, 1]"),
        ({"scores": {"gemma-2-9b-it": "high"}}, "scores.gemma-2-9b-it", "score in [0, 1]"),
        ({"question": ""}, "question", "non-empty text"),
        ({"scores": {}}, "scores", "non-empty object"),
    ],
)
def test_bad_score_items(lr_dir: Path, tmp_path: Path, catalog: Catalog, change: dict[str, Any], field: str,
                         fragment: str) -> None:
    data = items(lr_dir)[:3]
    data[2] = {**data[2], **change}
    path = write_scores(tmp_path / "s.json", data)
    with pytest.raises(LogValidationError) as err:
        import_llmrouter([path], [], catalog)
    assert (err.value.file, err.value.row, err.value.field) == (str(path), 3, field)
    assert fragment in str(err.value)


def test_bad_query_line(lr_dir: Path, tmp_path: Path, catalog: Catalog) -> None:
    lines = (lr_dir / "queries.jsonl").read_text().split("\n")
    lines[2] = '{"query": "x", "task_name": '
    bad = tmp_path / "q.jsonl"
    bad.write_text("\n".join(lines))
    with pytest.raises(LogValidationError) as err:
        import_llmrouter([lr_dir / "scores.json"], [bad], catalog)
    assert (err.value.file, err.value.row) == (str(bad), 3)


def test_unreadable_files(lr_dir: Path, tmp_path: Path, catalog: Catalog) -> None:
    with pytest.raises(LogValidationError, match="cannot read"):
        import_llmrouter([tmp_path / "none.json"], [], catalog)
    with pytest.raises(LogValidationError, match="cannot read"):
        import_llmrouter([lr_dir / "scores.json"], [tmp_path / "none.jsonl"], catalog)
    not_json = tmp_path / "s.json"
    not_json.write_text("{oops")
    with pytest.raises(LogValidationError, match="not valid JSON"):
        import_llmrouter([not_json], [], catalog)
