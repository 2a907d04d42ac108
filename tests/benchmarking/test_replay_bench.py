"""A run against the replay server: the choice scorer reproduces RouterBench's recorded quality."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llmroute.benchmarking.calls import CallPolicy
from llmroute.benchmarking.journal import Journal
from llmroute.benchmarking.runner import RunConfig, run_task, to_logs
from llmroute.benchmarking.scorers import choice_letter
from llmroute.benchmarking.task import Task, make_cases
from llmroute.data.catalog import load_catalog
from llmroute.data.importers import read_logs, write_logs
from tests.benchmarking.conftest import REPLAY_MODELS
from tests.serving.servers import LiveServer


def _reference_letters(logs: pd.DataFrame) -> pd.DataFrame:
    """Per prompt, the correct letter: the answer of a model that RouterBench scored 1 (prompts with none are dropped)."""
    right = logs[logs["quality"] == 1.0].drop_duplicates("prompt_id").set_index("prompt_id")["response"]
    return logs.drop_duplicates("prompt_id").set_index("prompt_id").assign(reference=right).dropna(subset=["reference"])


def test_replayed_answers_scored_like_routerbench(
    replay_server: LiveServer, replay_slice: pd.DataFrame, tmp_path: Path
) -> None:
    prompts = _reference_letters(replay_slice)
    assert len(prompts) >= 3
    task = Task("arc-challenge", make_cases("arc-challenge", list(prompts["prompt"]), list(prompts["reference"]),
                                            list(prompts.index)), None, max_tokens=4)
    report = run_task(task, list(REPLAY_MODELS), load_catalog(), Journal(tmp_path / "j.jsonl"), choice_letter,
                      CallPolicy(default_base_url=f"{replay_server.url}/v1", retries=0), RunConfig(progress=False))
    assert report.failed == 0 and report.sent == 2 * len(prompts)
    logs = to_logs(report.records)
    write_logs(logs, tmp_path / "bench.parquet")
    ours = read_logs(tmp_path / "bench.parquet").set_index(["prompt_id", "model"])
    recorded = replay_slice.set_index(["prompt_id", "model"]).loc[ours.index]
    assert (ours["quality"] == recorded["quality"]).all()
    assert (ours["response"] == recorded["response"]).all()
    # real usage from the provider: the replay server returns the recorded token counts
    assert (ours["input_tokens"] == recorded["input_tokens"]).all()
    assert (ours["cost_usd"] - recorded["cost_usd"]).abs().max() < 1e-6
