"""llmroute: a learned LLM router that picks the cheapest model that will meet a quality target."""

__version__ = "0.1.0"
