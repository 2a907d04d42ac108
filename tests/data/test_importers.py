from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from llmroute.data.importers import read_logs, run_import, split_llmrouter_files, write_logs
from llmroute.data.schema import COLUMNS, LogValidationError


def test_dispatch_routerbench_and_long(rb_files: list[Path], tmp_path: Path) -> None:
    df, report = run_import("routerbench", rb_files)
    assert report.rows_kept == len(df) == 418
    out = tmp_path / "logs.parquet"
    write_logs(df, out)
    again, report2 = run_import("long", [out])
    pd.testing.assert_frame_equal(again, df)
    assert report2.rows_kept == 418


def test_dispatch_llmrouter_separates_files(lr_dir: Path, tmp_path: Path) -> None:
    odd = tmp_path / "scores_without_extension"
    shutil.copy(lr_dir / "scores.json", odd)
    scores, queries = split_llmrouter_files([lr_dir / "queries.jsonl", odd, lr_dir / "scores.json"])
    assert scores == [odd, lr_dir / "scores.json"] and queries == [lr_dir / "queries.jsonl"]
    df, report = run_import("llmrouter", [lr_dir / "queries.jsonl", lr_dir / "scores.json"], assumed_output_tokens=0)
    assert report.rows_kept == 180 and df["task"].notna().sum() == 162


def test_bad_format_options_and_files(rb_files: list[Path], lr_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown import format 'csv'"):
        run_import("csv", rb_files)
    with pytest.raises(ValueError, match="assumed_output_tokens"):
        run_import("routerbench", rb_files, assumed_output_tokens=3)
    with pytest.raises(ValueError, match="score file"):
        run_import("llmrouter", [lr_dir / "queries.jsonl"])


def test_read_write_round_trip(rb_files: list[Path], tmp_path: Path) -> None:
    df, _ = run_import("routerbench", rb_files[1:2])
    path = tmp_path / "sub" / "logs.parquet"
    write_logs(df[list(reversed(COLUMNS))], path)
    back = read_logs(path)
    assert tuple(back.columns) == COLUMNS
    pd.testing.assert_frame_equal(back, df)


def test_write_logs_validates(rb_files: list[Path], tmp_path: Path) -> None:
    df, _ = run_import("routerbench", rb_files[1:2])
    df.loc[5, "quality"] = 2.0
    with pytest.raises(LogValidationError) as err:
        write_logs(df, tmp_path / "x.parquet")
    assert (err.value.row, err.value.field) == (6, "quality")
    assert not (tmp_path / "x.parquet").exists()


def test_read_logs_unreadable(tmp_path: Path) -> None:
    with pytest.raises(LogValidationError, match="cannot read") as err:
        read_logs(tmp_path / "missing.parquet")
    assert err.value.file == str(tmp_path / "missing.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(LogValidationError, match="cannot read"):
        read_logs(junk)
