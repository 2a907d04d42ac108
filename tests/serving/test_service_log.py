"""The service's own log reaches standard error in every process, `--workers` processes included."""

from __future__ import annotations

import logging

import pytest

from llmroute.serving.service_log import LOGGER, log_to_stderr


def test_the_service_log_goes_to_stderr_once_per_process(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger(LOGGER)
    monkeypatch.setattr(logger, "handlers", [h for h in logger.handlers if not getattr(h, "_llmroute_cli", False)])
    monkeypatch.setattr(logger, "level", logging.WARNING)
    log_to_stderr()
    log_to_stderr()  # a worker's app factory after the command: still one handler
    assert sum(getattr(h, "_llmroute_cli", False) for h in logger.handlers) == 1
    logging.getLogger("llmroute.serving").info("serving router x/2 (was x/1)")
    assert capsys.readouterr().err.count("llmroute: serving router x/2 (was x/1)") == 1
