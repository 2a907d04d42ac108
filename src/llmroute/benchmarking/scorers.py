"""Scorers: turn a model's answer into a quality in [0, 1].

A scorer is any callable ``scorer(response, case) -> float | Score`` (or an awaitable of one);
custom scorers are plain Python functions. Synchronous scorers run in a worker thread, never on
the event loop. The built-ins: :func:`exact_match`, :func:`choice_letter`, :func:`numeric`,
:func:`regex`, :class:`PythonTests` (the answer's code against unit tests, in a subprocess with a
time limit) and :class:`Judge` (a catalog model grades the answer against a rubric or reference).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmroute.benchmarking.task import ScorerSpec, TestCase

if TYPE_CHECKING:
    from llmroute.benchmarking.calls import ModelCaller


@dataclass(frozen=True)
class Score:
    """A quality in [0, 1] and, when useful, why."""

    value: float
    reason: str | None = None


ScoreLike = float | int | bool | Score
Scorer = Callable[[str, TestCase], ScoreLike | Awaitable[ScoreLike]]


def as_score(result: Any) -> Score:
    """Coerce a scorer's return value to a :class:`Score` with ``0 <= value <= 1``."""
    s = result if isinstance(result, Score) else Score(float(result))
    if not 0.0 <= s.value <= 1.0:
        raise ValueError(f"scorer returned {s.value}, expected a quality within [0, 1]")
    return s


def normalize(text: str) -> str:
    """Casefold, collapse whitespace, drop surrounding quotes and a trailing full stop."""
    t = " ".join(text.split()).casefold().strip("\"'` ")
    return t[:-1].rstrip() if t.endswith(".") else t


def _need_ref(case: TestCase) -> str:
    if case.reference is None:
        raise ValueError(f"prompt {case.prompt_id}: this scorer needs a reference answer")
    return case.reference


def exact_match(response: str, case: TestCase) -> Score:
    """1 when the normalized answer equals the normalized reference."""
    ok = normalize(response) == normalize(_need_ref(case))
    return Score(float(ok), None if ok else "answer differs from the reference")


_CHOICE_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*\(?([A-J])\b\)?", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-J])\)?(?:[\s.):,]|$)"),
    re.compile(r"\b([A-J])\b"),
)


def extract_choice(text: str) -> str | None:
    """The multiple-choice letter (A-J) an answer picks, or None."""
    for pattern in _CHOICE_PATTERNS:
        m = pattern.search(text)
        if m:
            return m.group(1).upper()
    return None


def choice_letter(response: str, case: TestCase) -> Score:
    """1 when the letter the answer picks is the reference's letter."""
    want = extract_choice(_need_ref(case))
    got = extract_choice(response)
    if got is None:
        return Score(0.0, "no choice letter in the answer")
    return Score(float(got == want), None if got == want else f"picked {got}, expected {want}")


_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:[eE][-+]?\d+)?|-?\.\d+")


def extract_number(text: str) -> float | None:
    """The answer's number: after a final ``####`` if present, else the last number in the text."""
    tail = text.rsplit("####", 1)[-1]
    found = _NUMBER.findall(tail)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", "").rstrip("."))
    except ValueError:
        return None


def numeric(tolerance: float = 1e-6, relative: bool = False) -> Scorer:
    """1 when the answer's number is within ``tolerance`` (absolute, or relative) of the reference."""

    def score(response: str, case: TestCase) -> Score:
        want = extract_number(_need_ref(case))
        if want is None:
            raise ValueError(f"prompt {case.prompt_id}: reference {case.reference!r} is not a number")
        got = extract_number(response)
        if got is None:
            return Score(0.0, "no number in the answer")
        limit = tolerance * abs(want) if relative else tolerance
        ok = abs(got - want) <= limit
        return Score(float(ok), None if ok else f"got {got:g}, expected {want:g}")

    return score


def regex(pattern: str, flags: int = re.IGNORECASE) -> Scorer:
    """1 when ``pattern`` is found in the answer; ``{reference}`` in it stands for the escaped reference."""

    def score(response: str, case: TestCase) -> Score:
        pat = pattern.replace("{reference}", re.escape(_need_ref(case))) if "{reference}" in pattern else pattern
        ok = re.search(pat, response, flags) is not None
        return Score(float(ok), None if ok else "pattern not found")

    return score


_FENCE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_code(text: str) -> str:
    """The code of an answer: its fenced blocks joined, else the whole text."""
    blocks = _FENCE.findall(text)
    return "\n\n".join(blocks) if blocks else text


class PythonTests:
    """Run the answer's code followed by the reference unit tests in ``python -I``, in a temp dir.

    Score 1 when the script exits 0. On timeout the whole process group is killed and the score is
    0 with the reason. No network or filesystem sandbox beyond that: run untrusted code in a
    container.
    """

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s

    def __call__(self, response: str, case: TestCase) -> Score:
        program = extract_code(response) + "\n\n" + _need_ref(case) + "\n"
        with tempfile.TemporaryDirectory(prefix="llmroute-code-") as tmp:
            script = Path(tmp) / "solution_test.py"
            script.write_text(program, encoding="utf-8")
            proc = subprocess.Popen(
                [sys.executable, "-I", str(script)], cwd=tmp, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
            try:
                _, err = proc.communicate(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return Score(0.0, f"timed out after {self.timeout_s:g} s")
        if proc.returncode == 0:
            return Score(1.0)
        lines = err.decode("utf-8", "replace").strip().splitlines()
        return Score(0.0, f"tests failed (exit {proc.returncode}): {lines[-1] if lines else ''}"[:300])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.communicate()


DEFAULT_RUBRIC = "Is the answer correct and consistent with the reference?"

JUDGE_TEMPLATE = """You are grading an answer to a task.

Rubric: {rubric}

Task:
{prompt}

Reference answer (may be empty):
{reference}

Answer to grade:
{response}

Reply with one line 'SCORE: N' where N is an integer from 0 (fails the rubric) to 10 (fully meets it)."""

_JUDGE_SCORE = re.compile(r"SCORE\s*[:=]\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


class Judge:
    """LLM-as-judge: a catalog model grades the answer 0-10 against a rubric; quality = grade / 10.

    Its calls go through the run's :class:`ModelCaller`, so they count towards the spend and the
    budget. An unparseable verdict raises (the answer is kept in the journal and rescored on rerun).
    """

    def __init__(self, model: str, rubric: str = DEFAULT_RUBRIC,
                 caller: ModelCaller | None = None, max_tokens: int = 64) -> None:
        self.model = model
        self.rubric = rubric
        self.caller = caller
        self.max_tokens = max_tokens

    async def __call__(self, response: str, case: TestCase) -> Score:
        if self.caller is None:
            raise RuntimeError("Judge has no caller: it is bound to one when a benchmark run starts")
        prompt = JUDGE_TEMPLATE.format(rubric=self.rubric, prompt=case.prompt, reference=case.reference or "",
                                       response=response)
        answer = await self.caller.complete(self.model, [{"role": "user", "content": prompt}], self.max_tokens, 0.0)
        if not answer.ok or answer.response is None:
            raise RuntimeError(f"judge {self.model} failed: {answer.error}")
        m = _JUDGE_SCORE.search(answer.response)
        if m is None:
            raise ValueError(f"judge {self.model} gave no 'SCORE: N' line: {answer.response[:200]!r}")
        grade = min(max(float(m.group(1)), 0.0), 10.0)
        return Score(grade / 10.0, f"judge {self.model}: {grade:g}/10")


def build_scorer(spec: ScorerSpec) -> Scorer:
    """A built-in scorer from a task file's ``scorer:`` entry."""
    o = dict(spec.options)
    scorer: Scorer
    try:
        if spec.kind == "exact":
            scorer = exact_match
        elif spec.kind == "choice":
            scorer = choice_letter
        elif spec.kind == "numeric":
            scorer = numeric(float(o.pop("tolerance", 1e-6)), bool(o.pop("relative", False)))
        elif spec.kind == "regex":
            scorer = regex(str(o.pop("pattern")))
        elif spec.kind == "python_tests":
            scorer = PythonTests(float(o.pop("timeout_s", 10.0)))
        elif spec.kind == "judge":
            scorer = Judge(str(o.pop("model")), str(o.pop("rubric", DEFAULT_RUBRIC)))
        else:
            raise ValueError(f"unknown scorer {spec.kind!r}")
    except KeyError as exc:
        raise ValueError(f"scorer {spec.kind!r} needs the option {exc.args[0]!r}") from None
    if o:
        raise ValueError(f"scorer {spec.kind!r}: unknown options {sorted(o)}")
    return scorer
