"""Task files: inline prompts, prompt files, errors that name the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.benchmarking.task import ScorerSpec, TaskError, load_task, prompt_id_for
from tests.benchmarking.conftest import FIXTURES


def test_inline_task() -> None:
    task = load_task(FIXTURES / "arithmetic.yaml")
    assert task.name == "arithmetic" and len(task.cases) == 3
    assert [c.reference for c in task.cases] == ["42", "42", "42.0"]
    assert task.cases[0].prompt_id == "q1"
    assert task.cases[2].prompt_id == prompt_id_for("arithmetic", "Give the number: 40 + 2")
    assert task.scorer == ScorerSpec("numeric", {"tolerance": 0.01})
    assert task.messages(task.cases[0])[0] == {"role": "system", "content": "Answer with a number only."}
    assert task.max_tokens == 16


def test_prompt_file_task() -> None:
    task = load_task(FIXTURES / "code.yaml")
    assert [c.prompt_id for c in task.cases] == ["add-1", "add-2"]
    assert task.cases[0].reference is not None and "assert add(1, 2) == 3" in task.cases[0].reference


def test_csv_prompts_and_errors(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("prompt,reference\nfirst,1\nsecond,2\n")
    (tmp_path / "t.yaml").write_text("name: t\nprompts: p.csv\nscorer: exact\n")
    assert [c.reference for c in load_task(tmp_path / "t.yaml").cases] == ["1", "2"]
    (tmp_path / "bad.yaml").write_text("name: t\nprompts: [{prompt: x}]\nscorer: fuzzy\n")
    with pytest.raises(TaskError, match=r"bad.yaml, field 'scorer': unknown scorer 'fuzzy'"):
        load_task(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("name: t\nprompts: [{text: x}]\n")
    with pytest.raises(TaskError, match=r"bad2.yaml, field 'prompts"):
        load_task(tmp_path / "bad2.yaml")
    (tmp_path / "q.jsonl").write_text('{"prompt": "ok"}\n{"reference": "1"}\n')
    (tmp_path / "bad3.yaml").write_text("name: t\nprompts: q.jsonl\n")
    with pytest.raises(TaskError, match=r"q.jsonl, row 2, field 'prompt'"):
        load_task(tmp_path / "bad3.yaml")
