"""Import LLMRouter's routing data (ulab-uiuc/LLMRouter) into the log schema.

Score files (``dcrouter_preprocessed/{train,test}.json``) are JSON lists of
``{question, scores: {model: float in [0, 1]}, cluster_id?}``. Query files
(``example_data/query_data/default_query_{train,test}.jsonl``) hold ``{task_name, query, ...}``
per line and give each question its task. Each (question, model) score becomes one schema row.

Row numbers in errors: for a score file, the 1-based position of the item in the JSON list; for a
query file, the line number.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from llmroute.data.catalog import Catalog, load_catalog
from llmroute.data.schema import COLUMNS, ImportReport, LogValidationError, empty_frame
from llmroute.data.tokens import count_tokens_batch
from llmroute.data.validate import validate_sources

SOURCE = "llmrouter"
DEFAULT_ASSUMED_OUTPUT_TOKENS = 256
SKIP_NULL = "score missing (null)"
SKIP_REPEAT = "question repeated with identical scores (first occurrence kept)"
NOTE_NO_TASK = "rows whose task was not found in the query files (task left null)"
NOTE_AMBIGUOUS = "rows whose question is listed under several tasks in the query files (task left null)"
NOTE_NO_MODEL = "rows whose model is not in the catalog (cost left null)"
NOTE_NO_PRICE = "rows whose model has no catalog price (cost left null)"


def prompt_id_for(question: str) -> str:
    """Stable prompt id of an LLMRouter question: ``"llmrouter:"`` + first 16 hex of its SHA-1."""
    return "llmrouter:" + hashlib.sha1(question.encode("utf-8")).hexdigest()[:16]


def import_llmrouter_files(
    files: Sequence[Path],
    catalog: Catalog | None = None,
    assumed_output_tokens: int = DEFAULT_ASSUMED_OUTPUT_TOKENS,
) -> tuple[pd.DataFrame, ImportReport]:
    """The "llmrouter" import format (:mod:`llmroute.data.log_formats`): :func:`import_llmrouter` on
    ``files`` told apart into score and query files by :func:`split_llmrouter_files`, priced with
    ``catalog`` (default: the bundled one). ValueError when no score file is given."""
    scores, queries = split_llmrouter_files(files)
    if not scores:
        raise ValueError("format 'llmrouter' needs at least one score file (.json list of {question, scores})")
    return import_llmrouter(scores, queries, catalog if catalog is not None else load_catalog(),
                            assumed_output_tokens=assumed_output_tokens)


def split_llmrouter_files(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Separate LLMRouter score files from query files: ``.jsonl`` / ``.ndjson`` files are query files,
    ``.json`` files score files, and any other file is told apart by its first character (``[`` = score
    list, ``{`` = query lines)."""
    scores: list[Path] = []
    queries: list[Path] = []
    for path in map(Path, files):
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson"):
            queries.append(path)
        elif suffix == ".json" or _first_char(path) == "[":
            scores.append(path)
        else:
            queries.append(path)
    return scores, queries


def _first_char(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as fh:
            while chunk := fh.read(4096):
                stripped = chunk.lstrip()
                if stripped:
                    return stripped[0]
    except (OSError, UnicodeDecodeError) as exc:
        raise LogValidationError(str(path), None, None, f"cannot read: {exc}") from exc
    return ""


def import_llmrouter(
    score_files: Iterable[str | Path],
    query_files: Iterable[str | Path],
    catalog: Catalog,
    assumed_output_tokens: int = DEFAULT_ASSUMED_OUTPUT_TOKENS,
) -> tuple[pd.DataFrame, ImportReport]:
    """Import LLMRouter score files, taking each question's task from the query files.

    ``prompt_id`` is :func:`prompt_id_for` of the question text. A question that occurs again in
    the imported score files with identical scores is skipped and counted; with different scores
    it is an error naming both places (the shipped train and test files share 119 questions,
    50 of them with different scores, so import them in separate calls). Questions missing from
    the query files, or listed there under several tasks, keep a null task and are counted in
    the report's notes.

    The data has no answers, token counts or latency. ``cost_usd`` is therefore ESTIMATED
    (``cost_is_estimated`` True): catalog input price x cl100k tokens of the question + catalog
    output price x ``assumed_output_tokens``. The default, 256, is close to the mean answer length
    RouterBench measured on a free-form task (MBPP: 233 cl100k tokens, median 217, averaged over
    11 models); for LLMRouter's multiple-choice tasks it overestimates, for long chain-of-thought
    math it underestimates. Because every LLMRouter model has equal input and output prices, the
    choice adds ``price x N`` to each model's cost and never changes which model is cheaper.
    ``output_tokens`` stays null (no answer was counted); ``latency_ms`` and ``response`` are null.
    """
    if assumed_output_tokens < 0:
        raise ValueError(f"assumed_output_tokens must be >= 0, got {assumed_output_tokens}")
    score_paths = [str(p) for p in score_files]
    query_paths = [str(p) for p in query_files]
    tasks = _read_tasks(query_paths)
    records: list[dict[str, Any]] = []
    first_seen: dict[str, tuple[str, int, dict[str, float | None]]] = {}
    read = 0
    skipped: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    for file in score_paths:
        for item_no, question, scores in _read_scores(file):
            read += len(scores)
            if question in first_seen:
                other_file, other_no, other_scores = first_seen[question]
                if other_scores != scores:
                    where = f"item {other_no}" if other_file == file else f"{other_file}, item {other_no}"
                    raise LogValidationError(
                        file, item_no, "question",
                        f"question repeated with different scores (first seen at {where}); "
                        "expected each question once per import (import train and test separately)",
                    )
                skipped[SKIP_REPEAT] += len(scores)
                continue
            first_seen[question] = (file, item_no, scores)
            task_names = tasks.get(question, set())
            task = next(iter(task_names)) if len(task_names) == 1 else None
            for model, score in scores.items():
                if score is None:
                    skipped[SKIP_NULL] += 1
                    continue
                notes[NOTE_NO_TASK] += not task_names
                notes[NOTE_AMBIGUOUS] += len(task_names) > 1
                records.append({"prompt": question, "model": model, "quality": score, "task": task,
                                "_file": file, "_row": item_no})
    df = _to_frame(records, catalog, assumed_output_tokens, notes)
    report = ImportReport(
        files=tuple(score_paths + query_paths),
        rows_read=read,
        rows_kept=len(df),
        skipped={k: v for k, v in skipped.items() if v},
        notes={k: v for k, v in notes.items() if v},
    )
    return df, report


def _read_text(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LogValidationError(file, None, None, f"cannot read: {exc}") from exc


def _read_tasks(files: list[str]) -> dict[str, set[str]]:
    tasks: dict[str, set[str]] = {}
    for file in files:
        for line_no, line in enumerate(_read_text(file).split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LogValidationError(file, line_no, None, f"expected a JSON object per line: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise LogValidationError(file, line_no, None, "expected a JSON object per line")
            for key in ("query", "task_name"):
                if not isinstance(obj.get(key), str) or not obj[key].strip():
                    raise LogValidationError(file, line_no, key, "expected non-empty text")
            tasks.setdefault(obj["query"], set()).add(obj["task_name"])
    return tasks


def _read_scores(file: str) -> Iterable[tuple[int, str, dict[str, float | None]]]:
    try:
        data = json.loads(_read_text(file))
    except json.JSONDecodeError as exc:
        raise LogValidationError(file, None, None, f"not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise LogValidationError(file, None, None, "expected a JSON list of {question, scores} objects")
    for item_no, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise LogValidationError(file, item_no, None, "expected an object with 'question' and 'scores'")
        question = item.get("question")
        if not isinstance(question, str) or not question.strip():
            raise LogValidationError(file, item_no, "question", "expected non-empty text")
        raw = item.get("scores")
        if not isinstance(raw, dict) or not raw:
            raise LogValidationError(file, item_no, "scores", "expected a non-empty object {model: score}")
        scores: dict[str, float | None] = {}
        for model, value in raw.items():
            scores[str(model)] = _score(value, file, item_no, f"scores.{model}")
        yield item_no, question, scores


def _score(value: Any, file: str, item_no: int, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LogValidationError(file, item_no, field, f"expected a score in [0, 1], got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise LogValidationError(file, item_no, field, f"expected a score in [0, 1], got {value!r}")
    return float(value)


def _to_frame(records: list[dict[str, Any]], catalog: Catalog, out_tokens: int, notes: Counter[str]) -> pd.DataFrame:
    if not records:
        return empty_frame()
    questions = list(dict.fromkeys(r["prompt"] for r in records))
    tokens = dict(zip(questions, count_tokens_batch(questions), strict=True))
    ids = {q: prompt_id_for(q) for q in questions}
    costs: list[float | None] = []
    for r in records:
        cost: float | None = None
        if r["model"] not in catalog:
            notes[NOTE_NO_MODEL] += 1
        else:
            r["model"] = catalog.canonical_name(r["model"])
            cost = catalog.estimate_cost(r["model"], tokens[r["prompt"]], out_tokens)
            notes[NOTE_NO_PRICE] += cost is None
        costs.append(cost)
    n = len(records)
    df = pd.DataFrame(
        {
            "prompt_id": [ids[r["prompt"]] for r in records],
            "prompt": [r["prompt"] for r in records],
            "model": [r["model"] for r in records],
            "quality": [r["quality"] for r in records],
            "cost_usd": costs,
            "cost_is_estimated": [c is not None for c in costs],
            "input_tokens": [tokens[r["prompt"]] for r in records],
            "output_tokens": [None] * n,
            "latency_ms": [None] * n,
            "task": [r["task"] for r in records],
            "response": [None] * n,
            "source": [SOURCE] * n,
            "created_at": [None] * n,
        },
        columns=list(COLUMNS),
    )
    return validate_sources(df, [r["_file"] for r in records], [r["_row"] for r in records])
