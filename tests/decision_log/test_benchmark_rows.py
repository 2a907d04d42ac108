"""Logged calls with feedback become benchmark-schema rows for retraining."""

from __future__ import annotations

import pandas as pd

from llmroute.data.decision_log import DecisionLogStore
from llmroute.data.decision_log.benchmark_rows import benchmark_rows
from llmroute.data.schema import COLUMNS, DTYPES
from tests.decision_log.helpers import decision, feedback, outcome


def test_benchmark_rows_keep_calls_with_outcome_and_feedback(sqlite_url: str) -> None:
    with DecisionLogStore(sqlite_url) as store:
        store.write_many([decision(i) for i in range(6)] + [decision(6, prompt="secret").redacted()])
        store.write_many([outcome(i, model="large" if i == 1 else "small") for i in (0, 1, 2, 6)])
        store.write_many([feedback(i, 0.1 * i) for i in (0, 1, 3, 6)])
        df, report = benchmark_rows(store.joined(batch_size=3))
    assert list(df.columns) == list(COLUMNS)
    assert dict(df.dtypes.items()) == {c: pd.api.types.pandas_dtype(t) for c, t in DTYPES.items()}
    assert df["prompt_id"].tolist() == ["d000000", "d000001"]
    assert df["model"].tolist() == ["small", "large"] and df["quality"].tolist() == [0.0, 0.1]
    assert set(df["source"]) == {"decision_log"} and df["task"].tolist() == ["mbpp", "mbpp"]
    assert report.rows_read == 7 and report.rows_kept == 2
    assert report.skipped == {"no feedback (quality unknown)": 3, "no outcome (decision only, e.g. /route)": 1,
                              "prompt redacted (only its hash is logged)": 1}
