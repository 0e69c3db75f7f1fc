"""``shopgym serve ARTIFACT``: an exported policy behind HTTP (FastAPI on one uvicorn worker)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from policies.runtime import ArtifactError
    from policies.serve import build_app

    try:
        app = build_app(
            args.artifact,
            epsilon=args.epsilon,
            seed=args.seed,
            log_dir=args.log_dir,
            log_max_bytes=int(args.log_max_mb * 1024 * 1024),
            max_batch=args.max_batch,
            max_body_bytes=int(args.max_body_kb * 1024),
            sample=args.sample,
        )
    except ArtifactError:
        raise  # the command line prints it in one line, exit 2
    except ValueError as error:  # an option this artifact cannot serve (e.g. --sample on rules)
        print(f"shopgym serve: {error}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, workers=1, log_level=args.log_level, access_log=False)
    return 0


def add_serve_parser(sub: Any) -> None:
    """The ``shopgym serve`` command."""
    serve = sub.add_parser(
        "serve",
        help="serve an exported policy over HTTP: POST /decide, /decide/batch; GET /healthz, /card",
        description=(
            "Load ARTIFACT once (integrity-checked), then serve decisions with their propensities. "
            "The policy's mode is served (propensity 1) unless --sample draws from a stochastic "
            "artifact's trained distribution (propensity: its probability) or --epsilon explores; "
            "every decision is appended to --log-dir for off-policy evaluation (shopgym ope join)."
        ),
    )
    serve.add_argument("artifact", help="directory written by shopgym export")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument(
        "--epsilon", type=float, default=0.0, help="share of uniformly random allowed incentives (default 0)"
    )
    serve.add_argument(
        "--sample",
        action="store_true",
        help="draw from the trained action distribution (PPO, A2C, MaskablePPO, TRPO artifacts)",
    )
    serve.add_argument("--seed", type=int, default=0, help="seed of the exploration draws (default 0)")
    serve.add_argument("--log-dir", help="decision log folder (JSON-lines segments); no log if omitted")
    serve.add_argument("--log-max-mb", type=float, default=64.0, help="segment size before rotation (MB)")
    serve.add_argument("--max-batch", type=int, default=256, help="largest /decide/batch (default 256)")
    serve.add_argument(
        "--max-body-kb", type=float, default=1024.0, help="largest request body (default 1024 kB)"
    )
    serve.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info"])
    serve.set_defaults(func=_serve)
