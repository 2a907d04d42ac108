"""Record factories for decision-log tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmroute.data.decision_log import DecisionRecord, FeedbackRecord, LoggedCandidate, OutcomeRecord, prompt_sha256

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def decision(i: int, *, prompt: str | None = None, at: datetime | None = None, **kw: object) -> DecisionRecord:
    text = prompt if prompt is not None else f"prompt number {i}"
    fields: dict[str, object] = dict(
        decision_id=f"d{i:06d}",
        created_at=at or T0 + timedelta(seconds=i),
        prompt=text,
        prompt_sha256=prompt_sha256(text),
        embedding=(0.25, -0.5, float(i)),
        embedder="minilm-static",
        router_version="llmroute@3",
        chosen_model="small",
        candidates=(
            LoggedCandidate("small", 0.8, 0.001, True),
            LoggedCandidate("large", 0.95, 0.02, False, "max_cost_usd"),
        ),
        constraints={"max_cost_usd": 0.01, "excluded_models": []},
        propensity=0.9,
        tenant="acme",
        user="u1",
        arm="treatment",
        target="95% of the best model",
        rule="threshold",
        knob=0.7,
        task_hint="mbpp",
        source="route",
    )
    fields.update(kw)
    return DecisionRecord(**fields)  # type: ignore[arg-type]


def outcome(i: int, **kw: object) -> OutcomeRecord:
    fields: dict[str, object] = dict(
        decision_id=f"d{i:06d}", model="small", ok=True, input_tokens=12, output_tokens=34, cost_usd=0.0007,
        latency_ms=123.5, attempts=({"model": "small", "ok": True, "latency_ms": 123.5},),
        created_at=T0 + timedelta(seconds=i, milliseconds=200),
    )
    fields.update(kw)
    return OutcomeRecord(**fields)  # type: ignore[arg-type]


def feedback(i: int, quality: float, *, after_s: float = 10, **kw: object) -> FeedbackRecord:
    return FeedbackRecord(decision_id=f"d{i:06d}", quality=quality,
                          created_at=T0 + timedelta(seconds=i + after_s), **kw)  # type: ignore[arg-type]
