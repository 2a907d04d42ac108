"""Progress display for long jobs (training, evaluation, simulations), on standard error.

A job made of phases of known relative size shows one bar whose percentage moves with the work done,
labelled with the phase at hand (:class:`Phases`); a phase reports how far it is with a callable
(:data:`Report`: a fraction in [0, 1] and a short label). :func:`say` prints a line above any bar.

Everything here is silent when :func:`quiet` is true: after :func:`set_quiet` (the CLI's ``--quiet``)
or with ``LLMROUTE_QUIET=1`` in the environment (so subprocesses inherit it). This module imports
nothing from llmroute, so every layer may use it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Report = Callable[[float, str], None]
"""How a phase says how far it is: ``report(fraction_done, label)``."""

QUIET_ENV = "LLMROUTE_QUIET"
_quiet: bool | None = None


def set_quiet(value: bool) -> None:
    """Silence (or not) every progress display of this process and of the subprocesses it starts."""
    global _quiet
    _quiet = value
    if value:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


def quiet() -> bool:
    """True when progress output is off (see the module docstring)."""
    if _quiet is not None:
        return _quiet
    return os.environ.get(QUIET_ENV, "").strip().lower() in ("1", "true", "yes")


def say(message: str) -> None:
    """A progress line on standard error (above any bar), unless quiet."""
    if quiet():
        return
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def bar(total: int | None, desc: str, unit: str = "it", **kwargs: Any) -> Any:
    """A tqdm bar on standard error, disabled when quiet (use it like tqdm)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=quiet(), dynamic_ncols=True, **kwargs)


def _ignore(_fraction: float, _label: str) -> None:
    return None


class Phases:
    """One bar for a job of weighted phases, e.g. ``Phases("training", {"embedding": 10, "quality
    model": 60})``: each phase owns its share of 100%, and the bar shows the phase at hand and the time
    left. Use as a context manager; ``with phases.phase(name) as report:`` runs a phase."""

    def __init__(self, desc: str, weights: dict[str, float]) -> None:
        total = sum(weights.values()) or 1.0
        self.weights = {k: 100.0 * v / total for k, v in weights.items()}
        self.done = 0.0
        self.desc = desc
        self._current: float | None = None
        self._bar = bar(100, desc, unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]")

    def __enter__(self) -> Phases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._current is not None:
            self._to(self._current)
            self._current = None
        self._bar.close()

    def _to(self, value: float) -> None:
        value = min(100.0, max(self.done, value))
        self._bar.update(value - self.done)
        self.done = value

    def start(self, name: str) -> Report:
        """Finish the phase at hand (if any) and start ``name``: the straight-line form of :meth:`phase`;
        :meth:`close` finishes the last one."""
        if self._current is not None:
            self._to(self._current)
        self._current = self.done + self.weights.get(name, 0.0)
        start, share = self.done, self.weights.get(name, 0.0)
        self._bar.set_description_str(f"{self.desc} ({name})")
        return self._reporter(name, start, share)

    def _reporter(self, name: str, start: float, share: float) -> Report:
        """The phase's :data:`Report`: a new label is shown at once (so each step of a phase appears in
        the output, even one shorter than the bar's refresh interval); a new fraction moves the bar."""
        shown = [""]

        def report(fraction: float, label: str = "") -> None:
            self._bar.set_description_str(f"{self.desc} ({name}: {label})" if label else f"{self.desc} ({name})",
                                          label != shown[0])
            shown[0] = label
            self._to(start + share * min(max(fraction, 0.0), 1.0))

        return report

    @contextmanager
    def phase(self, name: str) -> Iterator[Report]:
        """Run the phase ``name``; the yielded :data:`Report` moves the bar within its share."""
        start = self.done
        share = self.weights.get(name, 0.0)
        self._bar.set_description_str(f"{self.desc} ({name})")
        report = self._reporter(name, start, share)
        try:
            yield report
        finally:
            self._to(start + share)


def no_report() -> Report:
    """A :data:`Report` that does nothing (the default of functions that can report progress)."""
    return _ignore
