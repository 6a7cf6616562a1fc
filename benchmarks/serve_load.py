"""Load test of ``contrastkit serve`` (all-MiniLM-L6-v2): 32 concurrent clients beside hostile ones, vs one at a time.

Starts the server in a subprocess on loopback (with an API key), then runs three phases of
``--duration`` seconds each; every normal client sends POST /v1/embeddings requests of 1-8 STS-B
sentences (random, seeded) back to back:

1. ``hostile``: ``--clients`` normal clients plus a poison client (bodies with a lone surrogate,
   1.5 MB of token ids, invalid JSON without a key, ``dimensions: true``: each must get its 4xx) and an
   oversized chunked client (streams a 300 MB chunked body, alternately without a key, expecting
   401, and with one, expecting 413; it records how many bytes it got to send before the server
   answered and closed the connection);
   (the hostile clients run in a process of their own, so that they do not hold up the normal
   clients' event loop; they still share the machine's cores with everything else);
2. ``concurrent``: the normal clients alone;
3. ``one_at_a_time``: one normal client (the baseline).

Reports errors (any non-200 or connection failure of a normal client), p50/p99 latency,
requests/s and sentences/s, the server's encode calls (merged batches) from /healthz, and the
server's peak resident memory. The load generator shares the machine's cores with the server.

    python benchmarks/serve_load.py                 # 60 s per phase (about 3.5 min)
    python benchmarks/serve_load.py --duration 30   # 30 s per phase
    python benchmarks/serve_load.py --quick         # 8 clients, 5 s per phase
    python benchmarks/serve_load.py --server-threads 1   # the server on 1 torch thread (a shared machine)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, versions  # noqa: E402

KEY = "bench-key"
CHUNKED_TOTAL = 300 << 20  # bytes the oversized client offers per attempt
POISON = {
    "lone_surrogate": (b'{"input": ["a man plays", "abc \\ud800 def"]}', True, {400}),
    "token_ids_1.5mb": (b'{"input": [' + b"7," * 750_000 + b"7]}", True, {400}),  # under the 2 MiB body limit
    "invalid_json_no_key": (b"{not json", False, {401}),
    "dimensions_true": (b'{"input": "a man plays", "dimensions": true}', True, {400}),
}


def _sentences() -> list[str]:
    from contrastkit.evaluation.senteval import resolve_senteval_dir

    path = resolve_senteval_dir() / "STS" / "STSBenchmark" / "sts-train.csv"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7:
            out += [cols[5], cols[6]]
    return out


def _rss_mb(pid: int, field: str) -> float:
    """VmRSS or VmHWM (peak) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


async def _client(url: str, model: str, sents: list[str], stop: float, seed: int, lat: list[float],
                  stats: dict[str, Any]) -> None:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(timeout=60, headers=headers) as http:
        while time.perf_counter() < stop:
            texts = rng.sample(sents, rng.randint(1, 8))
            t = time.perf_counter()
            try:
                r = await http.post(url + "/v1/embeddings", json={"input": texts, "model": model})
                ok = r.status_code == 200 and len(r.json()["data"]) == len(texts)
                stats["status"][str(r.status_code)] += 1
            except httpx.HTTPError as err:
                ok = False
                stats["status"][type(err).__name__] += 1
            lat.append(time.perf_counter() - t)
            stats["requests"] += 1
            stats["texts"] += len(texts)
            stats["errors"] += 0 if ok else 1


async def _poison(url: str, stop: float, out: dict[str, Counter]) -> None:
    """Send each hostile body in turn; count the statuses per kind."""
    async with httpx.AsyncClient(timeout=60) as http:
        while time.perf_counter() < stop:
            for kind, (body, with_key, _) in POISON.items():
                headers = {"Content-Type": "application/json"}
                if with_key:
                    headers["Authorization"] = f"Bearer {KEY}"
                try:
                    r = await http.post(url + "/v1/embeddings", content=body, headers=headers)
                    out[kind][str(r.status_code)] += 1
                except httpx.HTTPError as err:
                    out[kind][type(err).__name__] += 1


async def _chunked_once(port: int, with_key: bool) -> dict[str, Any]:
    """Stream a CHUNKED_TOTAL chunked body; the status and how much was sent before the server answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {KEY}\r\n" if with_key else ""
    writer.write(f"POST /v1/embeddings HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: application/json\r\n"
                 f"Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b'{"input": ["' + b"a" * 65_000
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    t0 = time.perf_counter()
    status_line = asyncio.ensure_future(reader.readline())
    sent_at_answer = None
    sent = 0
    try:
        while sent < CHUNKED_TOTAL:
            if status_line.done() and sent_at_answer is None:
                sent_at_answer = sent
            writer.write(frame)
            await writer.drain()
            sent += len(chunk)
    except (ConnectionError, OSError):
        pass  # the server closed the connection
    try:
        line = await asyncio.wait_for(status_line, 30)
        status = int(line.split()[1]) if line else None
    except (asyncio.TimeoutError, ConnectionError, OSError, IndexError, ValueError):
        status = None
    writer.close()
    return {"status": status, "sent_mb": round(sent / 2**20, 1),
            "sent_mb_when_answered": round((sent if sent_at_answer is None else sent_at_answer) / 2**20, 1),
            "seconds": round(time.perf_counter() - t0, 2)}


async def _chunked(port: int, stop: float, out: list[dict[str, Any]]) -> None:
    with_key = False
    while time.perf_counter() < stop:
        res = await _chunked_once(port, with_key)
        out.append({"with_key": with_key, **res})
        with_key = not with_key


def _hostile_process(url: str, duration: float) -> tuple[dict[str, Counter], list[dict[str, Any]]]:
    """The poison and chunked clients for ``duration`` s, in a process of their own (their own event loop)."""
    poison: dict[str, Counter] = {k: Counter() for k in POISON}
    chunked: list[dict[str, Any]] = []
    stop = time.perf_counter() + duration

    async def both() -> None:
        await asyncio.gather(_poison(url, stop, poison), _chunked(int(url.rsplit(":", 1)[1]), stop, chunked))

    asyncio.run(both())
    return poison, chunked


async def _phase(url: str, model: str, sents: list[str], clients: int, duration: float, hostile: bool,
                 pid: int) -> dict[str, Any]:
    before = httpx.get(url + "/healthz").json()
    lat: list[float] = []
    stats: dict[str, Any] = {"requests": 0, "texts": 0, "errors": 0, "status": Counter()}
    t0 = time.perf_counter()
    stop = t0 + duration
    jobs: list[Any] = [_client(url, model, sents, stop, i, lat, stats) for i in range(clients)]
    with ProcessPoolExecutor(1) as pool:  # hostile clients must not slow the normal ones' event loop
        if hostile:
            jobs.append(asyncio.get_running_loop().run_in_executor(pool, _hostile_process, url, duration))
        done = await asyncio.gather(*jobs)
    poison, chunked = done[-1] if hostile else ({}, [])
    wall = time.perf_counter() - t0
    after = httpx.get(url + "/healthz").json()
    lat.sort()
    out: dict[str, Any] = {
        "clients": clients, "wall_s": round(wall, 2), **{k: v for k, v in stats.items() if k != "status"},
        "statuses": dict(stats["status"]),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1),
        "requests_per_s": round(stats["requests"] / wall, 2), "texts_per_s": round(stats["texts"] / wall, 1),
        "encode_calls": after["encode_calls"] - before["encode_calls"],
        "server_rss_mb": _rss_mb(pid, "VmRSS"), "server_peak_rss_mb": _rss_mb(pid, "VmHWM")}
    if hostile:
        out["poison"] = {k: {"statuses": dict(c), "expected": sorted(POISON[k][2]),
                             "unexpected": sum(n for s, n in c.items() if s not in {str(x) for x in POISON[k][2]})}
                         for k, c in poison.items()}
        out["chunked"] = {
            "attempts": len(chunked),
            "statuses": dict(Counter(f"{'key' if c['with_key'] else 'no key'}: "
                                     f"{c['status'] or 'reset before the answer was read'}" for c in chunked)),
            "max_mb_sent_before_answer": max((c["sent_mb_when_answered"] for c in chunked), default=None),
            "max_mb_sent_per_attempt": max((c["sent_mb"] for c in chunked), default=None),
            "offered_mb_per_attempt": CHUNKED_TOTAL >> 20,
            "median_s_per_attempt": statistics.median(c["seconds"] for c in chunked) if chunked else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all-MiniLM-L6-v2")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds per phase")
    ap.add_argument("--server-threads", type=int, default=None,
                    help="the server's torch threads (contrastkit serve --threads; default: torch's)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = ap.parse_args()
    if args.quick:
        args.clients, args.duration = 8, 5.0
        if args.out == ap.get_default("out"):
            args.out = "benchmarks/results/serve_load_quick.json"
    sents = _sentences()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "contrastkit.cli", "serve", "--model", args.model, "--port", "0", "--api-key", KEY]
    if args.server_threads is not None:
        cmd += ["--threads", str(args.server_threads)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    results: dict[str, Any] = {}
    try:
        line = ""
        while "listening on" not in line:
            line = server.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise SystemExit("server did not start")
        url = line.split("listening on", 1)[1].strip()
        results["server_rss_mb_at_start"] = _rss_mb(server.pid, "VmRSS")
        httpx.post(url + "/v1/embeddings", json={"input": sents[:8]}, timeout=60,
                   headers={"Authorization": f"Bearer {KEY}"})  # warm-up
        for name, clients, hostile in (("hostile", args.clients, True), ("concurrent", args.clients, False),
                                       ("one_at_a_time", 1, False)):
            results[name] = asyncio.run(_phase(url, args.model, sents, clients, args.duration, hostile, server.pid))
            print(name, json.dumps(results[name]), flush=True)
        results["healthz"] = httpx.get(url + "/healthz").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    results["throughput_ratio"] = round(results["concurrent"]["texts_per_s"] / results["one_at_a_time"]["texts_per_s"], 2)
    results["normal_client_errors_beside_hostile"] = results["hostile"]["errors"]
    out = {"date": str(date.today()), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "command": " ".join([Path(sys.executable).name, *sys.argv]), "server": " ".join(cmd[1:]),
           "versions": versions(["fastapi", "starlette", "uvicorn", "pydantic", "httpx"]), "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
