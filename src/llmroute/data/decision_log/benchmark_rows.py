"""Turn the joined log into rows of the benchmark-log schema (:mod:`llmroute.data.schema`) for retraining.

A logged call becomes a training row once it has an outcome and feedback: ``prompt_id`` is the
decision id, ``model`` the model whose answer was returned (after any cascade), ``quality`` the
latest feedback, ``source`` ``"decision_log"``. The schema has no propensity column: to correct for
exploration (off-policy), keep the export's ``propensity`` alongside, keyed by decision id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa

from llmroute.data.schema import COLUMNS, DTYPES, ImportReport, empty_frame

SOURCE = "decision_log"


def benchmark_rows(
    batches: Iterable[pa.RecordBatch], origin: str = "decision log"
) -> tuple[pd.DataFrame, ImportReport]:
    """Benchmark-schema rows from :meth:`DecisionLogStore.joined` batches, and what was skipped and why."""
    frames: list[pd.DataFrame] = []
    skipped: Counter[str] = Counter()
    read = 0
    for batch in batches:
        df = batch.to_pandas()
        read += len(df)
        reasons = [
            ("no feedback (quality unknown)", df["quality"].isna()),
            ("no outcome (decision only, e.g. /route)", df["outcome_model"].isna()),
            ("prompt redacted (only its hash is logged)", df["prompt"].isna()),
        ]
        keep = pd.Series(True, index=df.index)
        for reason, mask in reasons:
            hit = keep & mask
            skipped[reason] += int(hit.sum())
            keep &= ~mask
        kept = df[keep]
        if kept.empty:
            continue
        frames.append(pd.DataFrame({
            "prompt_id": kept["decision_id"],
            "prompt": kept["prompt"],
            "model": kept["outcome_model"],
            "quality": kept["quality"],
            "cost_usd": kept["cost_usd"],
            "cost_is_estimated": False,
            "input_tokens": kept["input_tokens"],
            "output_tokens": kept["output_tokens"],
            "latency_ms": kept["latency_ms"],
            "task": kept["task_hint"],
            "response": None,
            "source": SOURCE,
            "created_at": kept["outcome_created_at"],
        }))
    out = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    out = out[list(COLUMNS)].astype(DTYPES)
    report = ImportReport(files=(origin,), rows_read=read, rows_kept=len(out),
                          skipped={k: v for k, v in skipped.items() if v})
    return out, report
