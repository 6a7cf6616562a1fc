"""Load test of ``contrastkit serve`` (all-MiniLM-L6-v2): 32 concurrent clients vs one client at a time.

Starts the server in a subprocess on loopback, then for ``--duration`` seconds each of
``--clients`` clients sends POST /v1/embeddings requests of 1-8 STS-B sentences (random, seeded)
back to back. Reports errors, p50/p99 latency, requests/s and sentences/s, and the server's
encode calls (merged batches) from /healthz; then the same for one client (the baseline).
The load generator shares the machine's cores with the server.

    python benchmarks/serve_load.py            # 60 s + 60 s (about 2.5 min)
    python benchmarks/serve_load.py --quick    # 8 clients, 5 s + 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402


def _sentences() -> list[str]:
    from contrastkit.evaluation.senteval import resolve_senteval_dir

    path = resolve_senteval_dir() / "STS" / "STSBenchmark" / "sts-train.csv"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7:
            out += [cols[5], cols[6]]
    return out


async def _client(url: str, sents: list[str], stop: float, seed: int, lat: list[float], stats: dict) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=60) as http:
        while time.perf_counter() < stop:
            texts = rng.sample(sents, rng.randint(1, 8))
            t = time.perf_counter()
            try:
                r = await http.post(url + "/v1/embeddings", json={"input": texts, "model": "m"})
                ok = r.status_code == 200 and len(r.json()["data"]) == len(texts)
            except httpx.HTTPError:
                ok = False
            lat.append(time.perf_counter() - t)
            stats["requests"] += 1
            stats["texts"] += len(texts)
            stats["errors"] += 0 if ok else 1


async def _phase(url: str, sents: list[str], clients: int, duration: float) -> dict:
    before = httpx.get(url + "/healthz").json()
    lat: list[float] = []
    stats = {"requests": 0, "texts": 0, "errors": 0}
    t0 = time.perf_counter()
    await asyncio.gather(*[_client(url, sents, t0 + duration, i, lat, stats) for i in range(clients)])
    wall = time.perf_counter() - t0
    after = httpx.get(url + "/healthz").json()
    lat.sort()
    return {"clients": clients, "wall_s": round(wall, 2), **stats,
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
            "requests_per_s": round(stats["requests"] / wall, 2), "texts_per_s": round(stats["texts"] / wall, 1),
            "encode_calls": after["encode_calls"] - before["encode_calls"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.duration = 8, 5.0
        if args.out == ap.get_default("out"):
            args.out = "benchmarks/results/serve_load_quick.json"
    sents = _sentences()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "contrastkit.cli", "serve", "--model", args.model, "--port", str(port)]
    server = subprocess.Popen(cmd, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit("server did not start")
        httpx.post(url + "/v1/embeddings", json={"input": sents[:8]}, timeout=60)  # warm-up
        concurrent = asyncio.run(_phase(url, sents, args.clients, args.duration))
        print("concurrent", concurrent, flush=True)
        single = asyncio.run(_phase(url, sents, 1, args.duration))
        print("one at a time", single, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": " ".join([Path(sys.executable).name, *sys.argv]), "server": " ".join(cmd[1:]),
           "results": {"concurrent": concurrent, "one_at_a_time": single,
                       "throughput_ratio": round(concurrent["texts_per_s"] / single["texts_per_s"], 2)}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
