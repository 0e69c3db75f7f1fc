"""HTTP serving of an exported policy (FastAPI): decisions with propensities, logged for OPE.

``shopgym serve ARTIFACT`` loads the artifact once, at start, through :func:`policies.runtime.load_policy`
(which checks the card's integrity hash and the model file's SHA-256), then answers:

- ``POST /decide``: one shopper's raw features and allowed incentives in; the incentive, its
  propensity under the serving rule and the policy card's hash out.
- ``POST /decide/batch``: up to ``max_batch`` such requests in one call.
- ``GET /healthz``, ``GET /card``.

By default the policy's mode is served (its argmax over allowed incentives), with propensity 1.
With ``sample`` a stochastic artifact (an exported PPO, A2C, MaskablePPO or TRPO: its network
outputs an action distribution) draws each incentive from its trained distribution over the
allowed ones, and the propensity is that probability; deterministic artifacts (rules, bandits,
Q-networks) are refused for ``sample``. With ``epsilon`` > 0, a uniformly random allowed
incentive is served instead with probability ``epsilon``. The logged propensity is always the
serving rule's probability of the served incentive, ``(1 - epsilon) * pi(a) + epsilon / |allowed|``
(``pi`` one-hot on the mode unless sampling): what inverse-propensity estimators need to
evaluate another policy from the log.
Bad payloads get a 4xx with one line of text, never a 500.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from policies.decision_log import DecisionLog
from policies.runtime import FeatureError, RuntimePolicy, load_policy

#: Default largest request body (bytes): a batch of 256 decisions is about 200 kB.
MAX_BODY_BYTES = 1024 * 1024
#: Default largest batch.
MAX_BATCH = 256
#: Longest accepted request or shopper id.
MAX_ID_CHARS = 128

Number = StrictInt | StrictFloat


class DecideRequest(BaseModel):
    """One decision: raw features by name (days, dollars, counts) and the incentives this shopper may get."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    features: Annotated[dict[Annotated[str, Field(max_length=64)], Number], Field(max_length=256)]
    allowed: (
        Annotated[list[Annotated[str, Field(max_length=64)]], Field(min_length=1, max_length=64)] | None
    ) = None
    request_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)] | None = None
    shopper_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)] | None = None


class BatchRequest(BaseModel):
    """Several decisions in one call (at most the server's ``max_batch``)."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[DecideRequest], Field(min_length=1)]


class Decision(BaseModel):
    """A served decision: the incentive, its propensity under the serving rule, and who decided."""

    request_id: str
    incentive: str
    propensity: float
    card_hash: str


class Server:
    """The policy, the exploration rule and the decision log behind the HTTP endpoints."""

    def __init__(
        self,
        policy: RuntimePolicy,
        epsilon: float = 0.0,
        seed: int = 0,
        log: DecisionLog | None = None,
        max_batch: int = MAX_BATCH,
        sample: bool = False,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        if sample and not policy.stochastic:
            raise ValueError(
                f"{policy.name!r} ({policy.kind}) is deterministic: it has no distribution to sample; "
                "serve its decisions, with --epsilon for exploration"
            )
        if len(policy.heads) != 1:
            raise ValueError(
                f"serve decides one incentive per shopper; {policy.name!r} has heads {list(policy.heads)}"
            )
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.policy = policy
        self.epsilon = epsilon
        self.sample = sample
        self.rng = np.random.default_rng(seed)
        self.log = log
        self.max_batch = max_batch
        self.card_hash = str(policy.card["integrity"]["sha256"])
        self.served = 0

    def decide(self, requests: list[DecideRequest]) -> list[Decision]:
        """Decide every request (one batched model call), draw the exploration, log each decision."""
        names = self.policy.action_names
        allowed = [r.allowed if r.allowed is not None else list(names) for r in requests]
        features = [r.features for r in requests]
        if self.sample:  # a draw from the trained distribution over the allowed incentives
            dist = self.policy.action_probabilities(features, allowed)
            below = np.cumsum(dist, axis=1) < self.rng.random(len(requests))[:, None]
            drawn = np.minimum(below.sum(axis=1), dist.shape[1] - 1)
        else:
            drawn = self.policy.action_ids(features, allowed)
            dist = np.zeros((len(requests), len(names)))
            dist[np.arange(len(requests)), drawn] = 1.0
        explore = self.rng.random(len(requests)) < self.epsilon
        out = []
        now = time.time()
        for i, (request, chosen_by_policy, allowed_names, explores) in enumerate(
            zip(requests, drawn, allowed, explore, strict=True)
        ):
            unique = sorted(set(allowed_names), key=names.index)
            if explores:
                chosen = names.index(unique[int(self.rng.integers(len(unique)))])
            else:
                chosen = int(chosen_by_policy)
            propensity = (1.0 - self.epsilon) * float(dist[i, chosen]) + self.epsilon / len(unique)
            decision = Decision(
                request_id=request.request_id or uuid.uuid4().hex,
                incentive=names[chosen],
                propensity=propensity,
                card_hash=self.card_hash,
            )
            if self.log is not None:
                self.log.append(
                    {
                        "ts": now,
                        "request_id": decision.request_id,
                        "shopper_id": request.shopper_id,
                        "features": request.features,
                        "allowed": unique,
                        "incentive": decision.incentive,
                        "propensity": propensity,
                        "epsilon": self.epsilon,
                        "rule": "sample" if self.sample else "mode",
                        "card_hash": self.card_hash,
                    }
                )
            out.append(decision)
        self.served += len(out)
        return out


class BodyLimit:
    """ASGI middleware: a body larger than ``limit`` bytes gets 413 before it is parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse by Content-Length, or count the streamed body and stop at the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                await _plain(send, 413, f"request body over {self.limit} bytes")
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _plain(send, 413, f"request body over {self.limit} bytes")


class _TooLarge(Exception):
    """The streamed body passed the limit."""


async def _plain(send: Send, status: int, text: str) -> None:
    body = ('{"detail":"' + text + '"}').encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _one_line(error: RequestValidationError) -> str:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    count = len(error.errors())
    more = f" (+{count - 1} more)" if count > 1 else ""
    return f"{where}: {str(first.get('msg', 'invalid request'))[:200]}{more}"


def create_app(server: Server, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI application of one loaded policy."""
    app = FastAPI(title=f"shopgym policy {server.policy.name}", docs_url=None, redoc_url=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(error)}, status_code=422)

    @app.exception_handler(FeatureError)
    async def bad_features(_: Request, error: FeatureError) -> JSONResponse:
        return JSONResponse({"detail": " ".join(str(error).split())[:500]}, status_code=422)

    @app.post("/decide")
    async def decide(request: DecideRequest) -> Decision:
        return server.decide([request])[0]

    @app.post("/decide/batch")
    async def decide_batch(batch: BatchRequest) -> Any:
        if len(batch.items) > server.max_batch:
            return JSONResponse(
                {"detail": f"items: {len(batch.items)} decisions, at most {server.max_batch} per batch"},
                status_code=413,
            )
        return {"decisions": [d.model_dump() for d in server.decide(batch.items)]}

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "policy": server.policy.name,
            "card_hash": server.card_hash,
            "served": server.served,
        }

    @app.get("/card")
    async def card() -> dict[str, Any]:
        return dict(server.policy.card)

    app.add_middleware(BodyLimit, limit=max_body_bytes)
    return app


def build_app(
    artifact: str | Path,
    epsilon: float = 0.0,
    seed: int = 0,
    log_dir: str | Path | None = None,
    log_max_bytes: int = 64 * 1024 * 1024,
    max_batch: int = MAX_BATCH,
    max_body_bytes: int = MAX_BODY_BYTES,
    sample: bool = False,
) -> FastAPI:
    """Load and integrity-check the artifact once, and build the app that serves it."""
    policy = load_policy(artifact)
    log = DecisionLog(log_dir, log_max_bytes) if log_dir is not None else None
    return create_app(Server(policy, epsilon, seed, log, max_batch, sample), max_body_bytes)
