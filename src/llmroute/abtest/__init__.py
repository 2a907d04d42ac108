"""A/B tests of routers against static rules, live (through the service) and offline (simulated).

* :mod:`.experiment`: the experiment YAML, validated into frozen dataclasses.
* :mod:`.assignment`: the deterministic, sticky hash of the unit that picks an arm.
* :mod:`.arms`: an arm's policy (a router, the seed rules, always one model) returning a Decision.
* :mod:`.guardrails`: stopping an arm that breaks the cost or error limits.
* :mod:`.stats`: Welch, two-proportion, bootstrap and power computations (scipy.stats).
* :mod:`.report`: per-arm measures and comparisons from the decision log; :mod:`.render`: Markdown, HTML, PNG.
* :mod:`.simulate`: the same arms and assignment replayed over held-out benchmark logs.
* :mod:`.tracking`: the report logged to MLflow next to the routers.
"""
