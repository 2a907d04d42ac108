"""``POST /feedback``: a quality score for the answer behind a logged decision.

The feedback is durable before the 202: it is fsynced to the decision log's spool (or, when the
spool's disk refuses writes, committed to the database directly); if neither takes it the answer is
503 and the client retries. Nothing answered 202 is lost.

The decision id is checked first (:meth:`llmroute.serving.decision_logging.DecisionLog.decision_known`):
404 when the decision is known not to exist (not in the database and not issued by this service in
the last ``feedback_grace_s`` seconds); when it cannot be told (the database is unavailable, or the
decision may still be in a spool) the feedback is kept and joins its decision once that arrives.
Several scores for one decision are all kept; readers use the latest.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from llmroute.data.decision_log import FeedbackRecord
from llmroute.data.decision_log.spool import SpoolUnavailable
from llmroute.serving.deps import Authenticated, ServicesDep
from llmroute.serving.errors import ServiceError
from llmroute.serving.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"], dependencies=Authenticated)


@router.post("/feedback", status_code=202)
async def feedback(body: FeedbackRequest, services: ServicesDep) -> FeedbackResponse:
    """202 once the feedback is durable; 404 for a decision known not to exist; 422 on a bad body;
    503 (retry) when logging is off or the feedback cannot be made durable now."""
    log = services.decision_log
    if log is None:
        raise ServiceError(
            503, "decision_log_off",
            "feedback is not recorded: this service runs without a decision log (decision_log_url is off)",
        )
    known = await run_in_threadpool(log.decision_known, body.decision_id)
    if known is False:
        raise ServiceError(404, "unknown_decision", f"no decision {body.decision_id!r} was logged by this service")
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
    return FeedbackResponse(decision_id=record.decision_id, feedback_id=record.feedback_id)
