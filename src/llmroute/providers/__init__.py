"""Calling LLM providers: the OpenAI-compatible chat client (:mod:`.chat`), the HTTP clients under it
(:mod:`.http`), what a provider's failure may say (:mod:`.errors`) and the client's configuration
(:mod:`.config`). Used by the service (``serving``) and the benchmark runner (``benchmarking``); it
imports neither, nor fastapi.
"""
