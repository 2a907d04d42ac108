#!/usr/bin/env bash
# The README's "first hour" walk-through, runnable as it stands (a test runs it, so it cannot drift):
# a small training set from the bundled RouterBench logs, train (registered as @challenger), evaluate,
# route with a cost cap and with your own catalog, promote to @champion, then serve the champion in
# front of a replay server (recorded answers standing in for the providers) and ask it over HTTP.
#
#   bash scripts/first_hour.sh [WORK_DIR]        (default WORK_DIR: first-hour/)
#
# Environment: FIRST_HOUR_PROMPTS (training prompts, default 400), SERVE_PORT (8000), REPLAY_PORT
# (9000), LLMROUTE (the command, default: llmroute), LLMROUTE_HOME (state, default ~/.llmroute).
# Needs curl. Takes a few minutes on 2 cores; the first run also builds the static embedder.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-first-hour}
N=${FIRST_HOUR_PROMPTS:-400}
SERVE_PORT=${SERVE_PORT:-8000}
REPLAY_PORT=${REPLAY_PORT:-9000}
LLMROUTE=${LLMROUTE:-llmroute}
mkdir -p "$WORK"
step() { printf '\n== %s\n' "$*"; }

step "1. a small training set and a held-out set from the bundled RouterBench logs"
$LLMROUTE data import --format long data/routerbench/train.parquet --prompts "$N" --out "$WORK/train.parquet"
$LLMROUTE data import --format long data/routerbench/test.parquet --prompts 300 --out "$WORK/test.parquet"

step "2. train (progress on stderr; registered in MLflow as @challenger)"
$LLMROUTE train --logs "$WORK/train.parquet"

step "3. evaluate against every baseline"
$LLMROUTE evaluate --logs "$WORK/test.parquet" --report-dir "$WORK/report" --bootstrap 200

step "4. route one prompt under a cost cap (checked against catalog prices x counted tokens)"
$LLMROUTE route "Write a python function that reverses a list" --max-cost 0.002 --target 95%

step "5. your own catalog, merged over the bundled one: typical latencies make --max-latency-ms usable"
cat > "$WORK/my-catalog.yaml" <<'YAML'
models:
  - name: gpt-3.5-turbo-1106
    typical_latency_ms: 900
  - name: mistralai/mixtral-8x7b-chat
    typical_latency_ms: 1400
  - name: gpt-4-1106-preview
    typical_latency_ms: 4000
YAML
$LLMROUTE route "Write a python function that reverses a list" --max-latency-ms 2000 --catalog "$WORK/my-catalog.yaml"

step "6. promote: the first version becomes @champion (later ones must beat it on held-out logs)"
$LLMROUTE promote --logs "$WORK/test.parquet"

step "7. serve the champion in front of a replay server"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
$LLMROUTE replay-server --logs data/routerbench/test.parquet --port "$REPLAY_PORT" --unknown-prompt most_common &
pids+=($!)
$LLMROUTE serve --model models:/llmroute@champion --port "$SERVE_PORT" \
    --default-base-url "http://127.0.0.1:$REPLAY_PORT/v1" &
pids+=($!)
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$SERVE_PORT/ready" >/dev/null && curl -s -o /dev/null "http://127.0.0.1:$REPLAY_PORT/" && break
  sleep 1
done
curl -sf "http://127.0.0.1:$SERVE_PORT/ready"; echo

step "8. ask it: POST /route, an OpenAI-style chat, the model list, the served router"
curl -sf "http://127.0.0.1:$SERVE_PORT/route" -H 'Content-Type: application/json' \
    -d '{"prompt": "Write a python function that reverses a list", "target": "95%", "max_cost_usd": 0.002}'; echo
curl -sf "http://127.0.0.1:$SERVE_PORT/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model": "llmroute:95%", "messages": [{"role": "user", "content": "Write a python function that reverses a list"}]}'; echo
curl -sf "http://127.0.0.1:$SERVE_PORT/v1/models"; echo
curl -sf "http://127.0.0.1:$SERVE_PORT/models"; echo

step "done: the report is $WORK/report/report.md"
