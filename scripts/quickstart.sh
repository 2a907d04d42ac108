#!/usr/bin/env bash
# Set up a virtualenv, train a router on the bundled RouterBench logs, evaluate it on the held-out split
# and promote it to @champion (so that `llmroute serve` serves it). Local state goes to $LLMROUTE_HOME
# (default ~/.llmroute); the report to reports/routerbench/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/llmroute ] || {
  python3 -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e ".[dev]"
}
.venv/bin/llmroute train --logs data/routerbench/train.parquet
.venv/bin/llmroute evaluate --logs data/routerbench/test.parquet --report-dir reports/routerbench
.venv/bin/llmroute promote --logs data/routerbench/test.parquet
echo "open reports/routerbench/report.md (and cost_quality.png); then: source .venv/bin/activate"
