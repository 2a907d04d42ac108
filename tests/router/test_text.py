"""focus_text drops RouterBench-style few-shot exemplars; messages_to_prompt flattens chats."""

from __future__ import annotations

import pandas as pd
import pytest

from llmroute.router.text import focus_text, messages_to_prompt
from tests.router.helpers import ROUTERBENCH

ARC_CHOICE = 'Print only a single choice  from "A" or "B" or "C" or "D" without explanation.'
WINO_CHOICE = 'Print only a single choice  from "A" or "B" without explanation.'


def arc_item(question: str, answer: str | None) -> str:
    tail = "Answer:" if answer is None else f"Answer:\n{answer}"
    return f"{question}\nA) one\nB) two\nC) three\nD) four\n{ARC_CHOICE}\n{tail}"


def wino_item(sentence: str, answer: str | None) -> str:
    tail = "Answer:" if answer is None else f"Answer:\n{answer}"
    return f"{sentence}\nA) Ian\nB) Dennis\n{WINO_CHOICE} {tail}"


def test_arc_exemplars_are_dropped() -> None:
    real = arc_item("Which gas do plants absorb from the air?", None)
    prompt = "\n\n".join(
        [arc_item("What causes tides?", "B"), arc_item("Which is a mammal?", "D"), real]
    )
    assert focus_text(prompt) == real


def test_winogrande_exemplars_with_instruction_paragraphs_are_dropped() -> None:
    intro = "Please answer with the letter of the correct answer."
    real = wino_item("The drink was rich in caffeine because _ kept the drinker awake.", None)
    prompt = "\n\n".join(
        [
            intro,
            wino_item("Ian ate Dennis's menudo because _ despised intestine.", "B"),
            intro,
            wino_item("Ian ate Dennis's menudo because _ enjoyed intestine.", "A"),
            real,
        ]
    )
    assert focus_text(prompt) == real


def test_inline_answer_exemplars_are_dropped_and_later_paragraphs_kept() -> None:
    prompt = "Q: 2 + 2?\nAnswer: 4\n\nQ: 3 + 3?\nAnswer: 6\n\nQ: 5 + 7?\n\nShow your work."
    assert focus_text(prompt) == "Q: 5 + 7?\n\nShow your work."


@pytest.mark.parametrize(
    "prompt",
    [
        "Write a function to remove all elements from a given list present in another list.",
        "Write a python function.\n\nIt should reverse a string.\n\nUse no imports.",
        "Explain the word 'answer'.\n\nThen give an example.",
        # the only answer line is in the last paragraph: nothing before it is a solved exemplar
        "Some context paragraph.\n\nQuestion: what is 6 x 7?\nAnswer: 42",
        'A) x\nB) y\nPrint only a single choice  from "A" or "B" without explanation. Answer:',
    ],
)
def test_prompts_without_exemplars_are_unchanged(prompt: str) -> None:
    assert focus_text(prompt) == prompt
    assert focus_text(f"\n  {prompt}  \n\n") == prompt  # only surrounding white space is stripped


def test_bundled_routerbench_prompts() -> None:
    df = pd.read_parquet(ROUTERBENCH / "train.parquet", columns=["prompt_id", "prompt", "task"])
    first = df.drop_duplicates("prompt_id").groupby("task").head(20)
    for prompt, task in zip(first["prompt"], first["task"]):
        focus = focus_text(prompt)
        assert focus and prompt.strip().endswith(focus)
        if task in ("arc-challenge", "winogrande"):
            # the real question is kept (it ends with an unanswered "Answer:"), every exemplar dropped
            assert len(focus) < len(prompt) / 2
            assert focus.endswith("Answer:")
            assert focus.count("Answer:") == 1
        else:
            assert focus == prompt.strip()


def test_messages_to_prompt() -> None:
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Sum 2 and 3"},
        {"role": "tool", "content": None},  # type: ignore[dict-item]
        {"content": "no role means user"},
    ]
    assert messages_to_prompt(msgs) == (
        "[system]\nYou are terse.\n\nHi\n\n[assistant]\nHello.\n\nSum 2 and 3\n\n[tool]\n\n\nno role means user"
    )
    assert messages_to_prompt([]) == ""
    assert messages_to_prompt([{"role": "user", "content": "only"}]) == "only"
