"""Alembic migrations of the decision log (run by :func:`llmroute.data.decision_log.migrate.upgrade_to_head`)."""
