"""``shopgym bench serve``: a bounded HTTP load test of ``shopgym serve`` on 127.0.0.1.

The server runs in its own process (one uvicorn worker) on a free local port, pinned to one
core where the machine has two or more (the client runs on the others); an asyncio client
(httpx) sends valid ``POST /decide`` requests from 1, 8 and 64 concurrent clients, each level
bounded by a request count and a time limit, and reports sustained throughput and p50/p99
latency. Closed loop by default (each client sends its next request when the last is
answered: the server's capacity); with ``rate`` an open loop instead: requests are scheduled
at that many per second across the clients and each latency counts from its scheduled time,
so queueing behind a slow answer is measured (no coordinated omission).
During the 64-client level, one more task sends fuzzed bad payloads
(missing and unknown features, NaN, strings, nested junk, oversized batches and bodies); the
server must answer each with a 4xx, never a 5xx, and still be healthy at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

#: Only this host is ever contacted.
HOST = "127.0.0.1"
#: The real-time decision budget the figures are compared with (milliseconds).
BUDGET_MS = 50.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(artifact: Path, port: int, extra: list[str] | None = None, timeout_s: float = 60.0) -> Any:
    """``shopgym serve`` in a child process on 127.0.0.1:port, once /healthz answers."""
    import httpx

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "experiments.cli",
        "serve",
        str(artifact),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    server_core = _cores()[:1]

    def pin() -> None:  # in the child: the server gets a core of its own
        if server_core:
            os.sched_setaffinity(0, server_core)

    process = subprocess.Popen([*command, *(extra or [])], env=env, stdout=subprocess.DEVNULL, preexec_fn=pin)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"shopgym serve exited with {process.returncode} before answering")
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1.0).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"shopgym serve did not answer on {HOST}:{port} within {timeout_s:g} s")


def _cores() -> list[int]:
    """This machine's usable cores where the OS can pin a process (empty elsewhere, or on one core)."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    cores = sorted(os.sched_getaffinity(0))
    return cores if len(cores) >= 2 else []


def valid_payloads(
    feature_names: tuple[str, ...], action_names: tuple[str, ...], n: int, seed: int
) -> list[bytes]:
    """``n`` valid /decide bodies with random raw features and allowed sets."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        features = {name: float(np.round(rng.uniform(0, 50), 3)) for name in feature_names}
        allowed = ["none", *[a for a in action_names[1:] if rng.random() < 0.6]]
        out.append(json.dumps({"features": features, "allowed": allowed, "request_id": f"b{i}"}).encode())
    return out


def fuzzed_payloads(feature_names: tuple[str, ...], n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` (path, body) pairs every one of which a correct server refuses with a 4xx."""
    rng = np.random.default_rng(seed)
    good = {name: 1.0 for name in feature_names}

    def missing_one() -> dict[str, Any]:
        dropped = feature_names[int(rng.integers(len(feature_names)))]
        return {"features": {k: v for k, v in good.items() if k != dropped}}

    makers = [
        missing_one,
        lambda: {"features": {**good, f"junk_{int(rng.integers(1_000_000))}": 1.0}},
        lambda: {"features": {**good, feature_names[0]: "NaN"}},
        lambda: {"features": {**good, feature_names[1]: str(rng.random())}},
        lambda: {"features": {**good, feature_names[2]: [1, 2]}},
        lambda: {"features": {**good, feature_names[3]: None}},
        lambda: {"features": {**good, feature_names[4]: True}},
        lambda: {"features": good, "allowed": ["not_an_incentive"]},
        lambda: {"features": good, "allowed": []},
        lambda: {"features": good, "allowed": "none"},
        lambda: {"features": good, "surprise": 1},
        lambda: {"features": 3},
        lambda: [1, 2, 3],
        lambda: {"features": {**good, feature_names[0]: 1e400}},
    ]
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        pick = i % (len(makers) + 4)
        if pick < len(makers):
            body = json.dumps(makers[pick]()).replace("1e+400", "1e400").encode()
            out.append(("/decide", body))
        elif pick == len(makers):
            out.append(("/decide", b'{"features": {"recency": NaN'))  # truncated, not JSON
        elif pick == len(makers) + 1:
            out.append(("/decide/batch", json.dumps({"items": [{"features": good}] * 300}).encode()))
        elif pick == len(makers) + 2:
            out.append(("/decide", b"x" * (1024 * 1024 + 10)))  # over the body limit
        else:
            out.append(("/decide", bytes(rng.integers(0, 256, 64, dtype=np.uint8))))
    return out


def _figures(
    clients: int, rate: float, latencies: list[float], statuses: dict[int, int], elapsed: float
) -> dict[str, Any]:
    """A level's throughput (answered with 200 per second), latency percentiles and errors."""
    ms = np.asarray(latencies) * 1000.0
    ok = statuses.get(200, 0)
    return {
        "clients": clients,
        "offered_per_s": rate if rate > 0 else None,
        "requests": len(latencies),
        "seconds": round(elapsed, 3),
        "decisions_per_s": round(ok / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3) if ms.size else float("nan"),
        "p99_ms": round(float(np.percentile(ms, 99)), 3) if ms.size else float("nan"),
        "errors": len(latencies) - ok,
    }


async def _level(
    port: int,
    clients: int,
    bodies: list[bytes],
    max_requests: int,
    max_seconds: float,
    fuzz: list[tuple[str, bytes]] | None,
    rate: float = 0.0,
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    fuzz_statuses: dict[int, int] = {}
    sent = 0
    deadline = time.perf_counter() + max_seconds
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", limits=limits, timeout=30.0) as client:

        async def worker(w: int) -> None:
            nonlocal sent
            k = 0
            while sent < max_requests and time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)]
                sent += 1
                started = time.perf_counter()
                if rate > 0:  # open loop: this client's k-th request is due at its slot
                    due = origin + (k * clients + w) / rate
                    k += 1
                    if due > started:
                        await asyncio.sleep(due - started)
                    started = due
                response = await client.post("/decide", content=body, headers=headers)
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        async def fuzzer() -> None:
            for path, body in fuzz or []:
                try:
                    response = await client.post(path, content=body, headers=headers)
                    code = response.status_code
                except httpx.HTTPError:
                    code = -1  # the connection failed: counted as an error
                fuzz_statuses[code] = fuzz_statuses.get(code, 0) + 1

        started = origin = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(clients)), *([fuzzer()] if fuzz else []))
        elapsed = time.perf_counter() - started
        healthy = (await client.get("/healthz")).status_code == 200
    return {
        **_figures(clients, rate, latencies, statuses, elapsed),
        "fuzz_sent": sum(fuzz_statuses.values()),
        "fuzz_4xx": sum(v for k, v in fuzz_statuses.items() if 400 <= k < 500),
        "fuzz_5xx_or_failed": sum(v for k, v in fuzz_statuses.items() if k >= 500 or k < 0),
        "healthy_after": healthy,
    }


def _wrk_ms(text: str) -> float:
    """A wrk duration (``282.00us``, ``1.57ms``, ``2.10s``) in milliseconds."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(f"not a wrk duration: {text!r}")


def _wrk_level(port: int, clients: int, body: bytes, seconds: float, script_dir: Path) -> dict[str, Any]:
    """One closed-loop level driven by wrk (C, one thread): throughput and latency the client cannot cap."""
    script = script_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    command = ["wrk", "-t1", f"-c{clients}", f"-d{max(int(seconds), 1)}s", "--latency", "-s", str(script)]
    result = subprocess.run(
        [*command, f"http://{HOST}:{port}/decide"], capture_output=True, text=True, timeout=seconds + 60
    )
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not any("Requests/sec" in line for line in lines):
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr.strip()[:200]}")

    def field(prefix: str) -> str:
        return next((line.split()[1] for line in lines if line.strip().startswith(prefix)), "0")

    total = next(int(line.split()[0]) for line in lines if " requests in " in line)
    bad = int(next((line.split(":")[1] for line in lines if "Non-2xx" in line), "0"))
    socket = next((line for line in lines if "Socket errors" in line), "")
    errors = (
        bad + sum(int(part.split()[-1]) for part in socket.split(":", 1)[1].split(",")) if socket else bad
    )
    return {
        "clients": clients,
        "requests": total,
        "decisions_per_s": round(
            float(field("Requests/sec:").replace(",", "")) * (total - bad) / max(total, 1), 1
        ),
        "p50_ms": round(_wrk_ms(field("50%")), 3),
        "p99_ms": round(_wrk_ms(field("99%")), 3),
        "errors": errors,
    }


async def _raw_level(
    port: int, clients: int, bodies: list[bytes], seconds: float, rate: float
) -> dict[str, Any]:
    """Valid requests over plain keep-alive HTTP/1.1 sockets (asyncio streams): a light client.

    Closed loop, or with ``rate`` an open loop whose latencies count from each request's
    scheduled time.
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    requests = [
        b"POST /decide HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        for body in bodies
    ]
    origin = time.perf_counter()
    deadline = origin + seconds

    async def connection(w: int) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        k = 0
        try:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                if rate > 0:
                    due = origin + (k * clients + w) / rate
                    if due > started:
                        await asyncio.sleep(due - started)
                    started = due
                writer.write(requests[(k * clients + w) % len(requests)])
                k += 1
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - started)
                code = int(head.split(b" ", 2)[1])
                statuses[code] = statuses.get(code, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(w) for w in range(clients)))
    elapsed = time.perf_counter() - origin
    return _figures(clients, rate, latencies, statuses, elapsed)


def _with_fuzz(valid: Any, port: int, seconds: float, fuzz: list[tuple[str, bytes]]) -> dict[str, Any]:
    """Run ``valid()`` (one level of valid requests) in a thread while the fuzz goes through httpx."""
    import threading

    outcome: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: outcome.update(valid()), daemon=True)
    worker.start()
    fuzzed = asyncio.run(_level(port, 0, [b"{}"], 0, seconds, fuzz or None))
    worker.join(timeout=seconds + 90)
    if not outcome:
        raise RuntimeError("the load generator gave no result")
    keys = ("fuzz_sent", "fuzz_4xx", "fuzz_5xx_or_failed", "healthy_after")
    return {**outcome, **{k: fuzzed[k] for k in keys}}


def default_artifact(root: Path) -> Path:
    """An untrained PPO network of IncentiveTargeting-v0 in ONNX: the serving path of a trained one."""
    import gymnasium as gym

    import sim  # noqa: F401
    from policies.export import export_policy
    from policies.registry import make_policy

    overrides = {"population.shoppers": 300, "population.acquisition_days": 5.0}
    env = gym.make("shopgym/IncentiveTargeting-v0", overrides=overrides, horizon_days=10)
    policy = make_policy("ppo", env, seed=0)
    policy.save(root / "saved")
    export_policy(root / "saved", root / "ppo", overrides=overrides, check_samples=200)
    return root / "ppo"


def bench_serve(
    artifact: Path | None,
    levels: tuple[int, ...] = (1, 8, 64),
    max_requests: int = 20000,
    max_seconds: float = 20.0,
    fuzz: int = 10000,
    rate: float = 0.0,
    client: str = "httpx",
) -> list[dict[str, Any]]:
    """Load-test ``shopgym serve`` on 127.0.0.1 at each concurrency level; the fuzz goes with the last.

    ``client`` ``"wrk"`` drives the valid requests with wrk (closed loop, time-bounded) and
    ``"raw"`` with plain asyncio sockets (closed, or open at ``rate``), the fuzz going through
    httpx beside them, so that a Python HTTP client's own cost does not cap what is measured;
    ``"httpx"`` uses the httpx client throughout (closed, or open at ``rate``).
    """
    from policies.runtime import load_policy

    with tempfile.TemporaryDirectory(prefix="shopgym-bench-serve-") as tmp:
        path = artifact if artifact is not None else default_artifact(Path(tmp))
        policy = load_policy(path)
        bodies = valid_payloads(policy.feature_names, policy.action_names, 2000, seed=0)
        bad = fuzzed_payloads(policy.feature_names, fuzz, seed=1)
        port = free_port()
        server = start_server(path, port, ["--log-dir", str(Path(tmp) / "log")])
        cores = _cores()
        if cores:  # the client's own core(s), away from the server's
            os.sched_setaffinity(0, cores[1:])
        try:
            asyncio.run(_level(port, 4, bodies, 500, 5.0, None))  # warm-up, not reported
            records = []
            for i, clients in enumerate(levels):
                last = i == len(levels) - 1
                fuzz_now = bad if last else []
                if client == "wrk":
                    record = _with_fuzz(
                        lambda c=clients: _wrk_level(port, c, bodies[0], max_seconds, Path(tmp)),
                        port,
                        max_seconds,
                        fuzz_now,
                    )
                    record.update(offered_per_s=None, seconds=max_seconds)
                elif client == "raw":
                    record = _with_fuzz(
                        lambda c=clients: asyncio.run(_raw_level(port, c, bodies, max_seconds, rate)),
                        port,
                        max_seconds,
                        fuzz_now,
                    )
                else:
                    record = asyncio.run(
                        _level(port, clients, bodies, max_requests, max_seconds, bad if last else None, rate)
                    )
                record["client"] = client
                record["policy"] = policy.name
                records.append(record)
            alive = server.poll() is None
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            if cores:
                os.sched_setaffinity(0, cores)
        for record in records:
            record["server_alive"] = alive
        return records


def add_bench_serve_arguments(bench: argparse.ArgumentParser) -> None:
    """Options of ``shopgym bench serve`` (``--artifact`` is shared with ``bench export``)."""
    bench.add_argument("--clients", default="1,8,64", help="serve: concurrency levels (default 1,8,64)")
    bench.add_argument(
        "--requests", type=int, default=20000, help="serve: most requests per level (default 20000)"
    )
    bench.add_argument(
        "--seconds", type=float, default=20.0, help="serve: most seconds per level (default 20)"
    )
    bench.add_argument("--fuzz", type=int, default=10000, help="serve: bad payloads sent in the last level")
    bench.add_argument(
        "--client",
        choices=["auto", "wrk", "raw", "httpx"],
        default="auto",
        help="serve: who sends the valid requests: wrk (C, apt-get install wrk; closed loop), raw "
        "(asyncio sockets; closed or open loop) or httpx; auto: raw with --rate, else wrk when it is "
        "on PATH, else raw (default auto)",
    )
    bench.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="serve: open loop at this many requests/s across the clients (default 0: closed loop)",
    )


def run_bench_serve(args: argparse.Namespace) -> int:
    """Handle ``shopgym bench serve``."""
    from rich.console import Console
    from rich.table import Table

    levels = tuple(int(c) for c in args.clients.split(","))
    artifact = Path(args.artifact[0]) if args.artifact else None
    if args.rate < 0:
        print(f"shopgym bench serve: --rate must be >= 0, got {args.rate:g}", file=sys.stderr)
        return 2
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") and args.rate <= 0 else "raw"
    if client == "wrk" and (args.rate > 0 or not shutil.which("wrk")):
        why = (
            "--rate needs the httpx client (wrk runs a closed loop)"
            if args.rate > 0
            else "wrk is not on PATH"
        )
        print(f"shopgym bench serve: {why}", file=sys.stderr)
        return 2
    records = bench_serve(artifact, levels, args.requests, args.seconds, args.fuzz, args.rate, client)
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    loop = f"open loop at {args.rate:g} requests/s" if args.rate > 0 else f"closed loop, {client} client"
    table = Table(
        title=f"shopgym bench serve: one uvicorn worker on {HOST}, {loop}, {BUDGET_MS:g} ms decision budget"
    )
    for column in (
        "clients",
        "requests",
        "decisions/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "fuzz sent",
        "fuzz 4xx",
        "fuzz 5xx",
        "alive",
    ):
        table.add_column(column, justify="right")
    for r in records:
        table.add_row(
            str(r["clients"]),
            f"{r['requests']:,}",
            f"{r['decisions_per_s']:,.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            str(r["errors"]),
            f"{r['fuzz_sent']:,}",
            f"{r['fuzz_4xx']:,}",
            str(r["fuzz_5xx_or_failed"]),
            str(r["server_alive"] and r["healthy_after"]),
        )
    Console().print(table)
    return 0
