"""Benchmark task definitions: a YAML file naming the prompts, their references and how to score.

Format (``name`` and ``prompts`` are required)::

    name: arithmetic              # also the logs' ``task`` column and the prompt-id prefix
    prompts:                      # inline list ...
      - {id: q1, prompt: "What is 6 x 7?", reference: "42"}
      - prompt: "What is 2 + 2?"  # id defaults to <name>.<hash of the prompt>
        reference: "4"            # ``ground_truth`` is accepted as a synonym
    # ... or a path, relative to the YAML file, to a JSONL or CSV file with the columns
    # prompt, reference (or ground_truth) and optionally id:
    # prompts: questions.jsonl
    scorer: numeric               # exact | choice | numeric | regex | python_tests | judge
    # or with options:
    # scorer: {numeric: {tolerance: 0.01}}
    # scorer: {regex: {pattern: "^\\s*{reference}\\b"}}     # {reference} = the escaped reference
    # scorer: {python_tests: {timeout_s: 10}}              # reference = unit-test code
    # scorer: {judge: {model: gpt-4, rubric: "Is the answer faithful to the reference?"}}
    system_prompt: "Answer with a number only."           # optional
    max_tokens: 256                                       # default 512
    temperature: 0.0                                      # default 0.0

Errors name the file, the entry and the field at fault.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCORER_KINDS: tuple[str, ...] = ("exact", "choice", "numeric", "regex", "python_tests", "judge")


class TaskError(ValueError):
    """Bad task file: names the file, the entry and the field."""

    def __init__(self, file: str, where: str | None, message: str) -> None:
        self.file = file
        super().__init__(f"{file}{', ' + where if where else ''}: {message}")


@dataclass(frozen=True)
class TestCase:
    """One prompt of a task with its reference answer (``None`` when the scorer needs none)."""

    __test__ = False  # not a pytest class

    prompt_id: str
    prompt: str
    reference: str | None = None


@dataclass(frozen=True)
class ScorerSpec:
    """Which built-in scorer, with its options (e.g. ``{"tolerance": 0.01}``)."""

    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """A loaded benchmark task."""

    name: str
    cases: tuple[TestCase, ...]
    scorer: ScorerSpec | None = None
    system_prompt: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0

    def messages(self, case: TestCase) -> list[dict[str, str]]:
        """The chat messages sent for ``case``."""
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return out + [{"role": "user", "content": case.prompt}]


class _Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: str | None = None
    prompt: str = Field(min_length=1)
    reference: str | int | float | None = Field(default=None, alias="reference")
    ground_truth: str | int | float | None = None


class _TaskFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    prompts: list[_Prompt | str] | str
    scorer: str | dict[str, dict[str, Any] | None] | None = None
    system_prompt: str | None = None
    max_tokens: int = Field(default=512, gt=0)
    temperature: float = Field(default=0.0, ge=0)


def prompt_id_for(task_name: str, prompt: str) -> str:
    """Default prompt id: stable across runs and file reorderings."""
    return f"{task_name}.{hashlib.sha1(prompt.encode('utf-8')).hexdigest()[:12]}"


def make_cases(
    task_name: str, prompts: Sequence[str], references: Sequence[Any] | None = None,
    ids: Sequence[str | None] | None = None,
) -> tuple[TestCase, ...]:
    """Test cases from parallel lists; missing ids get :func:`prompt_id_for` (duplicates get ``#n``)."""
    if references is not None and len(references) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(references)} references")
    seen: dict[str, int] = {}
    out = []
    for i, prompt in enumerate(prompts):
        pid = (ids[i] if ids is not None else None) or prompt_id_for(task_name, prompt)
        if pid in seen:
            seen[pid] += 1
            pid = f"{pid}#{seen[pid]}"
        else:
            seen[pid] = 0
        ref = None if references is None else references[i]
        out.append(TestCase(pid, prompt, None if ref is None or _isna(ref) else _ref_str(ref)))
    return tuple(out)


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _ref_str(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def parse_scorer(raw: str | dict[str, Any] | None, file: str = "<task>") -> ScorerSpec | None:
    """``"numeric"`` or ``{"numeric": {"tolerance": 0.1}}`` -> :class:`ScorerSpec`."""
    if raw is None:
        return None
    if isinstance(raw, str):
        kind, options = raw, {}
    elif isinstance(raw, dict) and len(raw) == 1:
        kind, opts = next(iter(raw.items()))
        options = dict(opts or {})
    else:
        raise TaskError(file, "field 'scorer'", f"expected a scorer name or a one-key mapping, got {raw!r}")
    if kind not in SCORER_KINDS:
        raise TaskError(file, "field 'scorer'", f"unknown scorer {kind!r}; expected one of {', '.join(SCORER_KINDS)}")
    return ScorerSpec(kind, options)


def load_task(path: str | Path) -> Task:
    """Read and validate a task YAML file (see the module docstring for the format)."""
    p = Path(path)
    file = str(p)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(file, None, f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TaskError(file, None, f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TaskError(file, None, "expected a mapping with 'name' and 'prompts'")
    try:
        spec = _TaskFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise TaskError(file, f"field '{loc}'", err["msg"]) from None
    if isinstance(spec.prompts, str):
        entries = _read_prompt_file(p.parent / spec.prompts, file)
    else:
        entries = [_Prompt(prompt=e) if isinstance(e, str) else e for e in spec.prompts]
    if not entries:
        raise TaskError(file, "field 'prompts'", "no prompts")
    refs = [e.reference if e.reference is not None else e.ground_truth for e in entries]
    cases = make_cases(spec.name, [e.prompt for e in entries], refs, [e.id for e in entries])
    return Task(spec.name, cases, parse_scorer(spec.scorer, file), spec.system_prompt, spec.max_tokens,
                spec.temperature)


def _read_prompt_file(path: Path, task_file: str) -> list[_Prompt]:
    where = f"prompts file {path}"
    try:
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif path.suffix == ".csv":
            rows = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
        else:
            raise TaskError(task_file, where, "expected a .jsonl or .csv file")
    except (OSError, ValueError) as exc:
        raise TaskError(task_file, where, f"cannot read: {exc}") from exc
    out = []
    for i, row in enumerate(rows, start=1):
        row = {k: (v if v != "" else None) for k, v in row.items()}
        try:
            out.append(_Prompt.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise TaskError(str(path), f"row {i}, field '{'.'.join(map(str, err['loc']))}'", err["msg"]) from None
    return out
