"""``POST /feedback``: a quality score for the answer behind a logged decision.

The score is queued for the decision log and joins the decision by id when the log is read
(:meth:`llmroute.data.decision_log.DecisionLogStore.joined`). The id is not checked against the log
(that would take a database read on the request path): feedback for an unknown id is stored all
the same and simply never joins a decision. Several scores for one decision are all kept; readers
use the latest.
"""

from __future__ import annotations

from fastapi import APIRouter

from llmroute.data.decision_log import FeedbackRecord
from llmroute.serving.deps import Authenticated, ServicesDep
from llmroute.serving.errors import ServiceError
from llmroute.serving.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(tags=["feedback"], dependencies=Authenticated)


@router.post("/feedback", status_code=202)
async def feedback(body: FeedbackRequest, services: ServicesDep) -> FeedbackResponse:
    """202 once the feedback is queued; 422 on a bad body; 503 when logging is off or the queue is full."""
    log = services.decision_log
    if log is None:
        raise ServiceError(
            503, "decision_log_off",
            "feedback is not recorded: this service runs without a decision log (decision_log_url is off)",
        )
    record = FeedbackRecord(decision_id=body.decision_id, quality=body.quality, comment=body.comment)
    if not log.submit(record):
        raise ServiceError(
            503, "decision_log_busy", "the decision log is not accepting records right now; retry later",
            headers={"Retry-After": "1"},
        )
    return FeedbackResponse(decision_id=record.decision_id, feedback_id=record.feedback_id)
