from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _library_logging_on_a_lasting_stream() -> None:
    """Let transformers set up its log handler now, on a stream that outlives the tests.

    Otherwise it binds to the first CliRunner invocation's (later closed) stderr, and every later
    log record prints a "--- Logging error ---" traceback into the next invocation's output.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.get_verbosity()
