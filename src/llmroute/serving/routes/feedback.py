"""``POST /feedback``: a quality score for the answer behind a logged decision.

The feedback is durable before the 202: it is fsynced to the decision log's spool (or, when the
spool's disk refuses writes, committed to the database directly); if neither takes it the answer is
503 and the client retries. Nothing answered 202 is lost.

The decision id is checked first (:meth:`llmroute.serving.decision_logging.DecisionLog.decision_known`):
404 when the decision is known not to exist (not in the database and not issued by this service in
the last ``feedback_grace_s`` seconds); when it cannot be told (the database is unavailable, or the
decision may still be in a spool) the feedback is kept and joins its decision once that arrives.
Several scores for one decision are all kept; readers use the latest.
A ``cost_usd`` (what a /route user paid for the call) is booked in the budgets' spend ledger, once
per decision id, to the decision's tenant and user, so that decision must be known (404 otherwise,
and nothing is recorded).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from llmroute.data.decision_log import FeedbackRecord
from llmroute.data.decision_log.spool import SpoolUnavailable
from llmroute.serving.budget_control import Subjects
from llmroute.serving.client_key import KeyIdDep
from llmroute.serving.deps import Authenticated, ServicesDep
from llmroute.serving.errors import ServiceError
from llmroute.serving.schemas import FeedbackRequest, FeedbackResponse
from llmroute.serving.state import Services

router = APIRouter(tags=["feedback"], dependencies=Authenticated)


@router.post("/feedback", status_code=202)
async def feedback(body: FeedbackRequest, services: ServicesDep, key_id: KeyIdDep) -> FeedbackResponse:
    """202 once the feedback is durable; 404 for a decision known not to exist; 422 on a bad body;
    503 (retry) when logging is off or the feedback cannot be made durable now.

    With ``cost_usd``, the cost is booked in the budgets' spend ledger first (once per decision id), to the
    decision's tenant and user (from this process's recent /route decisions, else the decision log) and the
    presenting key; 404 when the decision is not (yet) in the log, and nothing is recorded then."""
    log = services.decision_log
    if log is None:
        raise ServiceError(
            503, "decision_log_off",
            "feedback is not recorded: this service runs without a decision log (decision_log_url is off)",
        )
    known = await run_in_threadpool(log.decision_known, body.decision_id)
    if known is False:
        raise ServiceError(404, "unknown_decision", f"no decision {body.decision_id!r} was logged by this service")
    charged = await _charge_cost(services, body, key_id) if body.cost_usd is not None else None
    record = FeedbackRecord(decision_id=body.decision_id, quality=body.quality, comment=body.comment)
    try:
        await asyncio.wrap_future(log.submit_durable(record))
    except SpoolUnavailable:
        try:  # the spool's disk refuses writes: commit it to the database directly
            await run_in_threadpool(log.store.write_many, [record])
        except Exception as exc:  # noqa: BLE001 - neither the disk nor the database takes it
            raise ServiceError(
                503, "decision_log_unavailable",
                f"the feedback could not be stored durably ({type(exc).__name__}); retry later",
                headers={"Retry-After": "5"},
            ) from None
    return FeedbackResponse(decision_id=record.decision_id, feedback_id=record.feedback_id, cost_charged=charged)


async def _charge_cost(services: Services, body: FeedbackRequest, key_id: str | None) -> bool | None:
    budgets = services.budgets
    if budgets is None or body.cost_usd is None:
        return None
    subjects = budgets.recent.get(body.decision_id)
    if subjects is None:
        found = await run_in_threadpool(budgets.ledger.decision_subjects, body.decision_id)
        if found is None:
            raise ServiceError(
                404, "unknown_decision",
                f"decision {body.decision_id!r} is not in the decision log (yet), so its cost cannot be booked to "
                "its tenant and user; nothing was recorded, retry in a moment",
                headers={"Retry-After": "1"},
            )
        subjects = Subjects(found[0], found[1], key_id)
    return await budgets.charge(body.decision_id, body.cost_usd, subjects, "feedback")
