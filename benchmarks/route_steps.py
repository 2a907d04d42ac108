"""Where one in-process ``route()`` spends its CPU: each step timed alone, in one run, for prompts of about
50, 200 and 500 tokens (the same prompts as ``benchmarks/route_latency.py``).

    python benchmarks/route_steps.py --model ~/.llmroute/routers/<version>
    python benchmarks/route_steps.py --model R --repeats 1000

Steps, in the order ``route()`` runs them: token count (tiktoken, bounded), focus text, embedding
(the router's embedder), text features, then in the quality model the neighbour search over the
reference prompts, the task probabilities, the design matrix, LightGBM's ``predict`` and the
calibration, then the decision (eligibility, rule, reason). ``route()`` is also timed whole; the
steps add up to a little less (the glue between them). CPU time of the calling thread, with the
router's one-thread limits on (:mod:`llmroute.router.threads`). Numbers depend on the machine and
its load: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from route_latency import prompt_of


def cpu_ms(f: Callable[[], object], repeats: int) -> float:
    for _ in range(min(20, repeats)):
        f()
    t0 = time.thread_time()
    for _ in range(repeats):
        f()
    return (time.thread_time() - t0) / repeats * 1000


def route_steps(router: Any, text: str) -> dict[str, Callable[[], object]]:
    """Each step of ``router.route(text)`` as a call that repeats it on the same inputs."""
    import numpy as np

    from llmroute.data.tokens import count_tokens_batch
    from llmroute.router.decision import RouteQuery
    from llmroute.router.features import text_features
    from llmroute.router.text import focus_text

    qm = router.quality
    focus = [focus_text(text)]
    tok = np.asarray(count_tokens_batch([text]), dtype=np.float64)
    emb = router.embedder.encode(focus)
    feats = text_features([text], focus, tok)
    nb = qm.index_.stats(emb, True)
    tp = qm._task_probs(emb, None, True)
    X = qm._design(emb, feats, nb, tp, True)
    raw = np.mean([b.predict(X, num_threads=1) for b in qm.boosters_], axis=0).reshape(1, -1)
    prep = router.prepare([text], independent_rows=True)
    probs, costs = router.predict(prep, None, independent_rows=True)
    q = [RouteQuery(text)]
    import lightgbm as lgb

    package = [lgb.Booster(model_str=b.model_to_string()) for b in qm.boosters_]
    return {
        "tokens": lambda: count_tokens_batch([text]),
        "focus": lambda: focus_text(text),
        "embedding": lambda: router.embedder.encode(focus),
        "features": lambda: text_features([text], focus, tok),
        "neighbours": lambda: qm.index_.stats(emb, True),
        "tasks": lambda: qm._task_probs(emb, None, True),
        "design": lambda: qm._design(emb, feats, nb, tp, True),
        "lightgbm": lambda: [b.predict(X, num_threads=1) for b in qm.boosters_],
        # the same model files through the lightgbm package (not a step of route(): for comparison)
        "(lightgbm package)": lambda: [b.predict(X, num_threads=1) for b in package],
        "calibration": lambda: [qm.calibrators_[j](raw[:, j]) for j in range(len(router.models))],
        "costs": lambda: router.cost_model.predict(tok),
        "decision": lambda: router.decide_all(q, probs, costs, prep.input_tokens),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="saved router folder")
    ap.add_argument("--repeats", type=int, default=500, help="calls per step and prompt length")
    args = ap.parse_args()

    from llmroute.config import load_settings
    from llmroute.router.embedder import load_embedder
    from llmroute.router.router import Router, read_router_meta
    from llmroute.router.threads import one_thread

    meta = read_router_meta(args.model)
    router = Router.load(args.model, load_embedder(meta["embedder"]["spec"], load_settings().embedders_dir))
    qm = router.quality
    print(f"router {args.model} ({len(router.models)} models, {len(qm.index_.embeddings)} reference prompts, "
          f"{sum(b.num_trees() for b in qm.boosters_)} trees); load {os.getloadavg()[0]:.2f}", flush=True)
    with one_thread():
        for tokens in (50, 200, 500):
            text = prompt_of(tokens)
            steps = route_steps(router, text)
            timed = {k: cpu_ms(f, args.repeats) for k, f in steps.items()}
            whole = cpu_ms(lambda: router.route(text), args.repeats)  # noqa: B023 - called before the next text
            print(f"{tokens}-token prompt: route() {whole:.3f} ms CPU; "
                  + ", ".join(f"{k} {v:.3f}" for k, v in timed.items())
                  + f" (sum {sum(v for k, v in timed.items() if not k.startswith('(')):.3f}); load {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
