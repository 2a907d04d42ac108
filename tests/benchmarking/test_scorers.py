"""Built-in scorers on known answers, and the code scorer refusing to hang."""

from __future__ import annotations

import time

import pytest

from llmroute.benchmarking.scorers import (
    PythonTests,
    Score,
    as_score,
    build_scorer,
    choice_letter,
    exact_match,
    extract_choice,
    extract_number,
    numeric,
    regex,
)
from llmroute.benchmarking.task import ScorerSpec, TestCase


def case(ref: str | None) -> TestCase:
    return TestCase("p1", "prompt", ref)


def test_exact_match_normalizes() -> None:
    assert exact_match("  Paris. ", case("paris")).value == 1.0
    assert exact_match("'PARIS'", case("Paris")).value == 1.0
    out = exact_match("London", case("Paris"))
    assert out.value == 0.0 and out.reason


def test_choice_letter() -> None:
    assert extract_choice("B") == "B"
    assert extract_choice("(C) because ...") == "C"
    assert extract_choice("The answer is d") == "D"
    assert extract_choice("none of these") is None
    assert choice_letter("B) wet palms", case("B")).value == 1.0
    assert choice_letter("A", case("B")).reason == "picked A, expected B"
    assert choice_letter("hmm", case("B")).value == 0.0


def test_numeric_with_tolerance() -> None:
    assert extract_number("it is 1,234.5 dollars") == 1234.5
    assert extract_number("steps 3 then 4 #### 12") == 12.0
    assert extract_number("no digits") is None
    score = numeric(tolerance=0.5)
    assert score("The answer is 42.4", case("42")).value == 1.0  # type: ignore[union-attr]
    assert score("41", case("42")).value == 0.0  # type: ignore[union-attr]
    assert numeric(0.1, relative=True)("95", case("100")).value == 1.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not a number"):
        score("1", case("forty-two"))


def test_regex() -> None:
    assert regex(r"\bparis\b")("It is Paris.", case(None)).value == 1.0  # type: ignore[union-attr]
    by_ref = regex(r"^\s*{reference}\b")
    assert by_ref("3.14 roughly", case("3.14")).value == 1.0  # type: ignore[union-attr]
    assert by_ref("3014", case("3.14")).value == 0.0  # type: ignore[union-attr]


def test_python_tests_pass_and_fail() -> None:
    tests = "assert add(2, 3) == 5"
    runner = PythonTests(timeout_s=10)
    assert runner("```python\ndef add(a, b):\n    return a + b\n```", case(tests)).value == 1.0
    failed = runner("def add(a, b):\n    return a * b", case(tests))
    assert failed.value == 0.0 and "AssertionError" in (failed.reason or "")
    isolated = runner("import os, sys\nassert sys.flags.isolated and 'llmroute-code-' in os.getcwd()", case("pass"))
    assert isolated.value == 1.0, isolated.reason


def test_python_tests_kill_infinite_loop_within_limit() -> None:
    hang = "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass'])\nwhile True:\n    pass"
    t0 = time.monotonic()
    out = PythonTests(timeout_s=1.0)(hang, case("pass"))
    assert time.monotonic() - t0 < 5
    assert out == Score(0.0, "timed out after 1 s")


def test_build_scorer_and_coercion() -> None:
    assert build_scorer(ScorerSpec("exact")) is exact_match
    assert build_scorer(ScorerSpec("numeric", {"tolerance": 2}))("43", case("42")).value == 1.0  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="needs the option 'pattern'"):
        build_scorer(ScorerSpec("regex"))
    with pytest.raises(ValueError, match="unknown options"):
        build_scorer(ScorerSpec("exact", {"x": 1}))
    assert as_score(True) == Score(1.0)
    with pytest.raises(ValueError, match="within"):
        as_score(1.5)
