"""Bounding long texts: keep the head and the tail, elide the middle.

Used where the cost of handling a text must not grow with its length: what the router reads of a
prompt (:func:`llmroute.router.text.focus_text`) and what the decision log keeps of it
(:func:`llmroute.data.decision_log.records.logged_prompt`).
"""

from __future__ import annotations

ELISION = "\n...\n"


def head_and_tail(text: str, head: int, tail: int) -> str:
    """``text`` when it has at most ``head + tail`` characters, else its first ``head`` and last ``tail``
    characters joined by :data:`ELISION`. Idempotent: a text cut once comes out of a second cut with
    the same ``head`` and ``tail`` unchanged."""
    if len(text) <= head + tail:
        return text
    return text[:head] + ELISION + text[-tail:]
