"""The run journal: an append-only JSONL file with one line per finished (prompt, model, repeat).

It is what makes a benchmark resumable: a rerun reads it and never sends a call whose answer is
already recorded. An answer whose scoring failed is recorded as ``unscored`` and only rescored; a
call that failed after its retries is recorded as ``failed`` and sent again. The last line for a
key wins. A torn last line (the process died mid-write) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Status = Literal["scored", "unscored", "failed"]
Key = tuple[str, str, int]


@dataclass(frozen=True)
class CallRecord:
    """One (prompt, model, repeat) outcome."""

    task: str
    prompt_id: str
    model: str
    repeat: int
    prompt: str
    status: Status
    response: str | None = None
    quality: float | None = None
    reason: str | None = None
    cost_usd: float | None = None
    cost_is_estimated: bool = True
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    created_at: str | None = None
    error: str | None = None

    @property
    def key(self) -> Key:
        return (self.prompt_id, self.model, self.repeat)


class Journal:
    """Append-only JSONL journal of :class:`CallRecord` s."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[Key, CallRecord]:
        """The latest record per key (empty when the file does not exist)."""
        out: dict[Key, CallRecord] = {}
        if not self.path.exists():
            return out
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = CallRecord(**json.loads(line))
            except (ValueError, TypeError) as exc:
                if i == len(lines):
                    break  # torn final write
                raise ValueError(f"{self.path}, line {i}: not a journal record ({exc})") from None
            out[rec.key] = rec
        return out

    def append(self, record: CallRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(record), ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

