"""Agreement between an answer and the answers a cascade saw before it.

The strongest post-call signal a cascade has (FrugalGPT; Yue et al., ICLR 2024, consistency cascades):
when a new answer says what the earlier, independent models said, it is more likely right; when it
contradicts them, one of them is wrong. Only answers *already received* are compared (in a cascade:
the earlier attempts), so the signal is available live exactly as offline.

- :func:`normalise_answer`: the key under which equivalent short answers agree (a choice letter, a
  number, else the whitespace-collapsed, case-folded text; for code, the code block's tokens).
- :func:`agreement_features`: one row of :data:`AGREEMENT_FEATURES` per (answer, earlier answers).
  With no earlier answers every feature but ``n_earlier`` is NaN (LightGBM's missing value), so a
  first attempt is scored on its own merits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

AGREEMENT_FEATURES: tuple[str, ...] = (
    "n_earlier",
    "agree_share",  # share of earlier answers with the same key
    "agree_last",  # same key as the attempt just before
    "jaccard_max",  # word-set Jaccard similarity to the most similar earlier answer
    "jaccard_mean",
    "earlier_agree_among_themselves",  # 1 when every earlier answer has the same key (2+ earlier answers)
    "agree_prior_max",  # the highest prior success rate among the earlier models that agree (0: none agrees)
    "disagree_prior_max",  # the highest prior success rate among the earlier models that disagree (0: none)
)

_LETTER = re.compile(r"^\W*(?:(?:the\s+)?answer\s*(?:is)?\s*:?\s*)?\(?([a-e])\)?(?:[.):]|\s*$)", re.IGNORECASE)
_FINAL = re.compile(r"answer\s*(?:is)?\s*:?\s*\(?([a-e])\)?\b", re.IGNORECASE)
_NUMBER = re.compile(r"^\W*(?:(?:the\s+)?answer\s*(?:is)?\s*:?\s*)?(-?\d+(?:\.\d+)?)\W*$", re.IGNORECASE)
_CODE_BLOCK = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)```|\[PYTHON\](.*?)\[/PYTHON\]", re.DOTALL)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|[^\sA-Za-z0-9_]")


def normalise_answer(text: str) -> str:
    """A key under which equivalent short answers agree: a single choice letter ('b' for ' (B). ',
    'Answer: B'), a single number ('42' for '42.'), else the stripped, case-folded, space-collapsed text."""
    s = " ".join(text.strip().split())
    for pattern in (_LETTER, _NUMBER, _FINAL):
        m = pattern.search(s) if pattern is _FINAL else pattern.match(s)
        if m:
            return m.group(1).casefold()
    return s.casefold()


def _words(text: str) -> frozenset[str]:
    """The word set compared by Jaccard similarity: the code block's tokens when the answer has one
    (prose around code differs between models even when the code agrees), else the text's."""
    blocks = [a or b for a, b in _CODE_BLOCK.findall(text)]
    body = "\n".join(blocks) if blocks else text
    return frozenset(w.casefold() for w in _WORD.findall(body))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def agreement_features(
    answers: Sequence[str], earlier: Sequence[Sequence[str]], priors: Sequence[Sequence[float]] | None = None
) -> np.ndarray:
    """(n, len(AGREEMENT_FEATURES)) float32: how ``answers[i]`` agrees with ``earlier[i]`` (the answers
    received before it, oldest first); ``priors[i][k]``: the prior success rate of the model that gave
    ``earlier[i][k]`` (NaN or absent: unknown). NaN where undefined (no earlier answer; a single earlier
    answer for ``earlier_agree_among_themselves``)."""
    if len(answers) != len(earlier) or (priors is not None and len(priors) != len(earlier)):
        raise ValueError(f"answers and earlier must have the same length, got {len(answers)} and {len(earlier)}")
    out = np.full((len(answers), len(AGREEMENT_FEATURES)), np.nan, dtype=np.float32)
    for i, (a, prev) in enumerate(zip(answers, earlier)):
        out[i, 0] = len(prev)
        if not prev:
            continue
        key = normalise_answer(a or "")
        keys = [normalise_answer(p or "") for p in prev]
        words = _words(a or "")
        sims = [_jaccard(words, _words(p or "")) for p in prev]
        out[i, 1] = sum(k == key for k in keys) / len(keys)
        out[i, 2] = float(keys[-1] == key)
        out[i, 3] = max(sims)
        out[i, 4] = math.fsum(sims) / len(sims)
        if len(keys) >= 2:
            out[i, 5] = float(len(set(keys)) == 1)
        pr = list(priors[i]) if priors is not None else [math.nan] * len(keys)
        agree = [x for x, k in zip(pr, keys) if k == key and not math.isnan(x)]
        differ = [x for x, k in zip(pr, keys) if k != key and not math.isnan(x)]
        out[i, 6] = max(agree, default=0.0)
        out[i, 7] = max(differ, default=0.0)
    return out
