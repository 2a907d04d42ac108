"""The fast marker counts of the text features equal the reference regular expressions' counts."""

from __future__ import annotations

import pandas as pd
import pytest

from llmroute.router.features import _CODE, _MATH, code_markers, digit_count, math_markers
from tests.router.helpers import ROUTERBENCH

EDGES = [
    "", "````", "``````", "```python\ndef f(): return 1;\n```", "{};{;}", "a=b+c-d*e/f^g $x$", "\\FRAC{1}{2} \\Sqrt 4",
    "HOW MANY apples? how  many? Solve it, solved, resolve, CALCULATE.", "ſolve", "İmport x", "def def def ",
    "classclass class class", "Return;return_x returned", "functional function FUNCTION", "python3 Python",
    "import  importlib import\n", "\\frac\\frac", "x=1\n=2==3", "héllo ¼ ² ٣", "0123456789 x9", "٣ and 3",
]


@pytest.mark.parametrize("text", EDGES)
def test_edge_cases(text: str) -> None:
    assert code_markers(text) == len(_CODE.findall(text))
    assert math_markers(text) == len(_MATH.findall(text))
    assert digit_count(text) == sum(map(str.isdigit, text))


@pytest.mark.slow  # every prompt of the bundled logs (8 s on a busy machine)
def test_every_bundled_prompt() -> None:
    prompts = pd.concat(
        [pd.read_parquet(folder / f, columns=["prompt"]) for folder in (ROUTERBENCH, ROUTERBENCH.parent / "llmrouter")
         for f in ("train.parquet", "test.parquet")]
    )["prompt"].drop_duplicates()
    for text in prompts:
        assert code_markers(text) == len(_CODE.findall(text)), text[:200]
        assert math_markers(text) == len(_MATH.findall(text)), text[:200]
        assert digit_count(text) == sum(map(str.isdigit, text)), text[:200]
