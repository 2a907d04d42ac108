"""A static (model2vec-style) sentence-transformers model, run with NumPy alone.

A static model is a tokenizer and one embedding row per token: a text's vector is the mean of its
tokens' rows, L2-normalised. Running it needs neither torch nor sentence-transformers (seconds of
import time on a busy machine), only the ``tokenizers`` and ``safetensors`` packages; it reads the very
files sentence-transformers saved, so the fingerprint (a hash of those files) is the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmroute.router.fingerprint import fingerprint_dir

STATIC_MODULE = "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding"


def is_static_model(path: Path) -> bool:
    """True when ``path`` holds a sentence-transformers model made of one StaticEmbedding module saved
    as ``model.safetensors`` + ``tokenizer.json`` at its root."""
    modules = path / "modules.json"
    if not modules.is_file() or not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        return False
    try:
        mods = json.loads(modules.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(mods, list)
        and len(mods) == 1
        and str(mods[0].get("type", "")).endswith("StaticEmbedding")
        and mods[0].get("path", "") == ""
    )


class NumpyStaticEmbedder:
    """Embeds like sentence-transformers' ``StaticEmbedding`` + ``normalize_embeddings=True``: tokens
    without special tokens (truncated as ``tokenizer.json`` says, 512 for MiniLM), mean of their rows, divided by max(norm, 1e-12); an empty text is a zero
    vector. Rows do not depend on the batch (``independent_rows``)."""

    independent_rows = True

    def __init__(self, spec: str, path: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.spec = spec
        self.path = path
        weights = load_file(str(path / "model.safetensors"))
        key = "embedding.weight" if "embedding.weight" in weights else next(iter(weights))
        self._weights = np.ascontiguousarray(weights[key], dtype=np.float32)
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._words = WordPieceWords.for_tokenizer(self._tokenizer, json.loads((path / "tokenizer.json").read_text()))
        self.dim = int(self._weights.shape[1])
        self.fingerprint = fingerprint_dir(path)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """The tokenizer's ids of each text (no special tokens, truncated as ``tokenizer.json`` says):
        plain-ASCII texts through :class:`WordPieceWords` when the tokenizer is one it reproduces, the
        rest through the tokenizer itself. Equal ids either way."""
        ids: list[list[int] | None] = [self._words.ids(t) for t in texts] if self._words else [None] * len(texts)
        rest = [i for i, x in enumerate(ids) if x is None]
        if rest:
            for i, enc in zip(rest, self._tokenizer.encode_batch([texts[i] for i in rest], add_special_tokens=False)):
                ids[i] = enc.ids
        return ids  # type: ignore[return-value]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        for i, ids in enumerate(self.token_ids(texts)):
            if ids:
                out[i] = self._weights[np.asarray(ids, dtype=np.int64)].mean(axis=0, dtype=np.float32)
        return out / np.maximum(_row_norms(out), np.float32(1e-12))[:, None]


_PLAIN_ASCII = re.compile(r"[\t\n\r\x20-\x7e]*")
_BERT_PIECES = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")
_BERT_PIECES_CASED = re.compile(r"[A-Za-z0-9]+|[^A-Za-z0-9\s]")


class WordPieceWords:
    """A BERT WordPiece tokenizer's ids for plain-ASCII text, split into words in Python and each word's
    ids looked up in a memo (filled by the tokenizer itself, one word at a time).

    Rule: for a text of printable ASCII, tabs and newlines only (no other control character), without any
    of the tokenizer's added tokens (``[UNK]``, ...), a ``BertNormalizer`` only lower-cases it (when
    configured to), and a ``BertPreTokenizer`` splits it into runs of letters and digits and single
    punctuation characters (every other printable ASCII character), dropping white space; WordPiece
    then works on each of these words alone. So the ids of the text are the memoised ids of its words
    in order, truncated as the tokenizer truncates, equal to what ``Tokenizer.encode`` returns, at a
    fraction of its cost (its normaliser and offset bookkeeping cost ~1.4 us a token). Any other text
    (accents, CJK, control characters) returns None: the caller uses the tokenizer.

    Guarantee: :meth:`for_tokenizer` returns None unless ``tokenizer.json`` is exactly this pipeline
    (``BertNormalizer``, ``BertPreTokenizer``, ``WordPiece``, no post-processor, right truncation).
    The memo holds at most ``max_words`` words; past that, new words are tokenised without being kept.
    """

    def __init__(self, tokenizer: Any, lowercase: bool, max_length: int | None, added: tuple[str, ...],
                 max_words: int = 200_000) -> None:
        self._tokenizer = tokenizer
        self._pieces = _BERT_PIECES if lowercase else _BERT_PIECES_CASED
        self._lowercase = lowercase
        self._max_length = max_length
        self._added = added
        self._memo: dict[str, list[int]] = {}
        self._max_words = max_words

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, config: dict[str, Any]) -> WordPieceWords | None:
        """The fast path for ``tokenizer`` (whose ``tokenizer.json`` is ``config``), or None when its
        pipeline is not the one this class reproduces."""
        norm = config.get("normalizer") or {}
        model = config.get("model") or {}
        trunc = config.get("truncation")
        if (
            norm.get("type") != "BertNormalizer"
            or not norm.get("clean_text", False)
            or (config.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer"
            or model.get("type") != "WordPiece"
            or config.get("post_processor") is not None
            or (trunc is not None and (trunc.get("direction") != "Right" or trunc.get("stride", 0) != 0))
        ):
            return None
        added = tuple(str(t["content"]) for t in config.get("added_tokens") or ())
        return cls(tokenizer, bool(norm.get("lowercase", True)), None if trunc is None else int(trunc["max_length"]),
                   added)

    def ids(self, text: str) -> list[int] | None:
        """The tokenizer's ids of ``text`` (see the class docstring), or None when ``text`` is not plain ASCII."""
        if not text.isascii() or _PLAIN_ASCII.fullmatch(text) is None:
            return None
        if "[" in text and any(a in text for a in self._added):
            return None
        memo = self._memo
        out: list[int] = []
        for word in self._pieces.findall(text.lower() if self._lowercase else text):
            got = memo.get(word)
            if got is None:
                got = self._tokenizer.encode(word, add_special_tokens=False).ids
                if len(memo) < self._max_words:
                    memo[word] = got
            out += got
            if self._max_length is not None and len(out) >= self._max_length:
                return out[: self._max_length]
        return out


def _row_norms(x: np.ndarray) -> np.ndarray:
    """float32 L2 norms of the rows, summed in the order torch's CPU kernel sums them (8 lanes of
    float32 partial sums, then the lanes in turn), so that vectors come out bit for bit as
    sentence-transformers makes them on the machines the bundled numbers were measured on."""
    n, d = x.shape
    if d % 8:
        return np.linalg.norm(x, axis=1).astype(np.float32)
    sq = x * x
    lanes = sq[:, :8].copy()
    for j in range(8, d, 8):
        lanes += sq[:, j : j + 8]
    total = lanes[:, 0].copy()
    for k in range(1, 8):
        total += lanes[:, k]
    return np.sqrt(total)
