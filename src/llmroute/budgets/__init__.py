"""Spend control: budgets per tenant, API key, user or everything, and what enforces them.

Pure parts only (no web framework, no tracking server): the service wires them in
(:mod:`llmroute.serving.budget_control`) and the decision-log database persists budgets and spend
(:mod:`llmroute.data.decision_log.ledger`).

* :mod:`.spec`: :class:`BudgetSpec` and the YAML budget file (validated, errors name file and field).
* :mod:`.windows`: calendar windows in a timezone, rolling windows, the ledger's time buckets.
* :mod:`.pacing`: the pacing controller (planned vs actual spend -> the router's quality target).
* :mod:`.enforcement`: the enforcement registry (alert, pace, downgrade, block) and its verdicts.
* :mod:`.alerts`: threshold and forecast alerts, each once per window.
* :mod:`.simulate`: offline replay of benchmark logs under each policy side by side.
"""
