from __future__ import annotations

from llmroute.data.tokens import count_tokens, count_tokens_batch


def test_known_counts() -> None:
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    assert count_tokens("tiktoken is great!") == 6


def test_special_token_text_is_counted_not_rejected() -> None:
    assert count_tokens("<|endoftext|>") > 1


def test_batch_matches_single() -> None:
    texts = ["a b c", "", "Write a function to sort a list of elements.", "ünïcödé ✓"]
    assert count_tokens_batch(texts) == [count_tokens(t) for t in texts]
    assert count_tokens_batch(iter(texts)) == count_tokens_batch(texts)
