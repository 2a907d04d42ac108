"""CPU of one circuit-breaker ``record()`` (every provider call makes one) with a full window of calls.

    python benchmarks/breaker_window.py                       # 60 s of calls at 450 a second (the default window)
    python benchmarks/breaker_window.py --rate 100 --calls 5000
    PYTHONPATH=OTHER/src python benchmarks/breaker_window.py  # another checkout, for a before/after

The breaker keeps the calls of its last ``window_s`` seconds to decide whether their error rate opens it;
this fills the window at ``--rate`` calls a second, then times ``--calls`` more records (CPU time of this
thread). In-process and single-threaded: the machine's load moves the microseconds a little, not the order.
"""

from __future__ import annotations

import argparse
import os
import time

from llmroute.serving.health import BreakerConfig, CircuitBreaker


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=450.0, help="Calls a second (the proxy's c = 32 throughput).")
    ap.add_argument("--calls", type=int, default=5000, help="Records timed.")
    ap.add_argument("--window-s", type=float, default=BreakerConfig().window_s)
    args = ap.parse_args()
    breaker = CircuitBreaker(BreakerConfig(window_s=args.window_s))
    now = 0.0
    for _ in range(int(args.rate * args.window_s)):
        breaker.record(False, now)
        now += 1.0 / args.rate
    t0 = time.thread_time()
    for _ in range(args.calls):
        breaker.record(False, now)
        now += 1.0 / args.rate
    per_call = (time.thread_time() - t0) / args.calls * 1e6
    print(f"record() with {len(breaker.calls):,} calls in the {args.window_s:g} s window: {per_call:.1f} us of CPU a call "
          f"(load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
