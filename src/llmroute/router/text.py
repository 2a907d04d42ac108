"""What of a prompt the router looks at.

Benchmark prompts often open with few-shot exemplars (solved questions) before the real one. They are
shared by every prompt of a task, so embedding the whole string mostly embeds the exemplars and makes
all prompts of a task look alike. :func:`focus_text` keeps the part that differs: the text after the
last solved exemplar. The same function runs at training and at routing time, so both see the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# A paragraph that ends with an answer marker followed by an answer ("Answer:\nB", "Answer: 42").
_SOLVED = re.compile(r"\banswer\s*:[ \t]*\n?[ \t]*\S[^\n]{0,200}$", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def focus_text(prompt: str) -> str:
    """Return the prompt without leading few-shot exemplars.

    A prompt is split into paragraphs at blank lines; if any paragraph before the last ends with an
    answer line (``Answer: X``), everything up to and including the last such paragraph is dropped.
    Prompts without exemplars are returned unchanged (stripped of surrounding white space).
    """
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
