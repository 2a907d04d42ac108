"""``python -m llmroute.cli``: the same command line as the ``llmroute`` console script."""

from __future__ import annotations

from llmroute.cli.root import main

if __name__ == "__main__":
    main()
