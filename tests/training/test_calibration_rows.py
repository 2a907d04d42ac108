"""Knob tables are calibrated on complete prompts: a partial (production) row's known outcome is the
logging router's choice, a biased sample of what each knob would realise."""

from __future__ import annotations

import numpy as np

from llmroute.data.wide import WideLogs
from llmroute.training.train import MIN_CALIBRATION_PROMPTS, calibration_rows


def logs(n_complete: int, n_partial: int) -> WideLogs:
    n, m = n_complete + n_partial, 3
    q = np.random.default_rng(0).uniform(size=(n, m))
    c = np.full((n, m), 0.001)
    q[n_complete:, 1:] = np.nan  # production rows: one observed model
    c[n_complete:, 1:] = np.nan
    return WideLogs(tuple(map(str, range(n))), tuple(f"p{i}" for i in range(n)), (None,) * n, ("a", "b", "c"),
                    q, c, np.full(n, 10.0), False)


def test_partial_rows_are_left_out_when_enough_complete_ones_exist() -> None:
    rows = calibration_rows(logs(MIN_CALIBRATION_PROMPTS, 30))
    np.testing.assert_array_equal(rows, np.arange(MIN_CALIBRATION_PROMPTS))


def test_partial_logs_alone_keep_every_row() -> None:
    np.testing.assert_array_equal(calibration_rows(logs(10, 30)), np.arange(40))
    np.testing.assert_array_equal(calibration_rows(logs(0, 5)), np.arange(5))
