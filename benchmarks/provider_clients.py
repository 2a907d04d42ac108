"""Client-side CPU of one provider call: httpx against aiohttp, the two clients of
``llmroute.providers.http``, calling the same local server (``benchmarks/floor_app.py``, in its
own process) with a chat-sized JSON body, at concurrency 1, 8 and 32, alternating round by round.

    python benchmarks/provider_clients.py --calls 1000 --rounds 2

Prints the CPU time of this process per call (the server's is not counted). Numbers depend on the
machine and its load (printed); compare the two clients within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from closed_loop import Server, free_port
from llmroute.providers.http import ProviderHTTP, Timeouts, make_provider_http

BODY = b'{"prompt": "' + b"hello " * 200 + b'"}'  # what the floor app's /route reads


async def cpu_per_call(client: str, url: str, calls: int, concurrency: int) -> float:
    http: ProviderHTTP = make_provider_http(client)
    timeouts = Timeouts(30.0, 5.0)
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            resp = await http.post(url, BODY, {}, timeouts)
            await resp.read()
            if resp.status != 200:
                raise SystemExit(f"{client}: HTTP {resp.status}")

    try:
        await asyncio.gather(*(one() for _ in range(concurrency)))  # connections up
        t0 = time.process_time()
        await asyncio.gather(*(one() for _ in range(calls)))
        return (time.process_time() - t0) / calls * 1000
    finally:
        await http.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--levels", default="1,8,32")
    args = ap.parse_args()
    import uvloop

    port = free_port()
    server = Server.start("floor", [sys.executable, str(Path(__file__).parent / "floor_app.py"), "--port", str(port)],
                          port, dict(os.environ))
    url = f"http://127.0.0.1:{port}/route"
    try:
        for r in range(args.rounds):
            for c in (int(x) for x in args.levels.split(",")):
                order = ("httpx", "aiohttp") if (r + c) % 2 == 0 else ("aiohttp", "httpx")
                cpu = {name: uvloop.run(cpu_per_call(name, url, args.calls, c)) for name in order}
                print(f"round {r + 1} c={c:>2}: client CPU per call httpx {cpu['httpx']:.3f} ms, aiohttp "
                      f"{cpu['aiohttp']:.3f} ms ({cpu['httpx'] / cpu['aiohttp']:.1f}x); load {os.getloadavg()[0]:.2f}",
                      flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
