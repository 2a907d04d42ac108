"""What of a prompt the router looks at.

Benchmark prompts often open with few-shot exemplars (solved questions) before the real one. They are
shared by every prompt of a task, so embedding the whole string mostly embeds the exemplars and makes
all prompts of a task look alike. :func:`focus_text` keeps the part that differs: the text after the
last solved exemplar. The same function runs at training and at routing time, so both see the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llmroute.data.long_text import head_and_tail as _head_and_tail

# A paragraph that ends with an answer marker followed by an answer ("Answer:\nB", "Answer: 42").
_SOLVED = re.compile(r"\banswer\s*:[ \t]*\n?[ \t]*\S[^\n]{0,200}$", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


FOCUS_HEAD_CHARS = 2_000
FOCUS_TAIL_CHARS = 2_000
SCAN_CHARS = 8 * (FOCUS_HEAD_CHARS + FOCUS_TAIL_CHARS)  # exemplars are looked for in this much of a prompt


def head_and_tail(text: str, head: int = FOCUS_HEAD_CHARS, tail: int = FOCUS_TAIL_CHARS) -> str:
    """``text`` when it has at most ``head + tail`` characters, else its first ``head`` and last ``tail``
    characters joined by an elision line (:func:`llmroute.data.long_text.head_and_tail`)."""
    return _head_and_tail(text, head, tail)


def focus_text(prompt: str) -> str:
    """Return the prompt without leading few-shot exemplars, at most ~4,000 characters of it.

    A prompt is split into paragraphs at blank lines; if any paragraph before the last ends with an
    answer line (``Answer: X``), everything up to and including the last such paragraph is dropped.
    Prompts without exemplars are returned unchanged (stripped of surrounding white space).

    Bounded, so that what a prompt costs to route does not grow with its length: of a prompt over
    32,000 characters only the first and last 16,000 are searched for exemplars, and of the focus
    text only the first and last 2,000 characters are kept (:func:`head_and_tail`), which is what the
    embedder and the text features see. The same function runs at training and routing time.
    """
    if len(prompt) > SCAN_CHARS:
        prompt = head_and_tail(prompt, SCAN_CHARS // 2, SCAN_CHARS // 2)
    return head_and_tail(_focus(prompt))


def _focus(prompt: str) -> str:
    text = prompt.strip()
    paragraphs = _PARAGRAPH_BREAK.split(text)
    if len(paragraphs) < 2:
        return text
    last_solved = -1
    for i, para in enumerate(paragraphs[:-1]):
        if _SOLVED.search(para.strip()):
            last_solved = i
    if last_solved < 0:
        return text
    rest = "\n\n".join(p for p in paragraphs[last_solved + 1 :] if p.strip())
    return rest or text


def messages_to_prompt(messages: Sequence[dict[str, str]]) -> str:
    """Flatten OpenAI-style chat messages into one prompt text (role-tagged, blank-line separated)."""
    parts = []
    for m in messages:
        content = m.get("content") or ""
        role = m.get("role", "user")
        parts.append(content if role == "user" else f"[{role}]\n{content}")
    return "\n\n".join(parts)
