"""Numbers read from answers, and their mean and median."""

from __future__ import annotations

import pytest

from llmroute.router.numeric_answers import combine, format_number, parse_number


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("42", 42.0),
        (" 42. ", 42.0),
        ("-3.5", -3.5),
        ("$1,234", 1234.0),
        ("Natalia sold 48 clips in April and 24 in May.\n#### 72", 72.0),
        ("So the total is \\boxed{17}.", 17.0),
        ("The answer is: 12 apples (3 boxes of 4)", 12.0),
        ("First 3 then 5, so 8", 8.0),  # the last number
        ("1/4", 0.25),
        ("50%", 50.0),
        ("−7", -7.0),
    ],
)
def test_parse_number(text: str, want: float) -> None:
    assert parse_number(text) == pytest.approx(want)


@pytest.mark.parametrize("text", ["", "B", "The answer is (C).", "no idea", "1/0"])
def test_non_numeric(text: str) -> None:
    assert parse_number(text) is None


def test_combine_and_format() -> None:
    assert combine([1.0, 2.0, 6.0], "mean") == 3.0
    assert combine([1.0, 2.0, 6.0], "median") == 2.0
    assert combine([1.0, 2.0, 6.0, 7.0], "median") == 4.0
    with pytest.raises(ValueError, match="no numbers"):
        combine([], "mean")
    with pytest.raises(ValueError, match="unknown numeric ensemble 'mode'"):
        combine([1.0], "mode")
    assert format_number(72.0) == "72" and format_number(10 / 3) == "3.333333333" and format_number(-0.5) == "-0.5"
