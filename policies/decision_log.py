"""Production decision logs and their join with an orders log into logged bandit feedback.

Every served decision is one JSON line: timestamp, request id, shopper id (optional), the raw
features, the allowed incentives, the chosen incentive, its propensity under the serving
rule and the card hash of the policy that chose it. Lines go to numbered segments
(``decisions-000001.jsonl`` ...): each line is one ``os.write`` on a file opened with
``O_APPEND``, so concurrent writers never interleave within a line, and a segment that
would grow past ``max_bytes`` is closed and the next one started (nothing is ever deleted).

The join reads the segments and an orders log (JSON lines ``{"request_id", "margin"}``: the
net margin the shop's attribution books on each decision) into Open Bandit Pipeline's
``BanditFeedback`` layout; a decision with no attributed order earned 0.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Segment file names: ``decisions-NNNNNN.jsonl``.
SEGMENT_PATTERN = re.compile(r"^decisions-(\d{6})\.jsonl$")
#: Largest line the reader accepts (a decision line is well under a kilobyte).
MAX_LINE_BYTES = 64 * 1024


class DecisionLogError(ValueError):
    """A decision or orders log is unreadable or inconsistent; the message names the file and line."""


class DecisionLog:
    """Append-only, size-rotated JSON-lines log of served decisions (thread-safe)."""

    def __init__(self, directory: str | Path, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_bytes < MAX_LINE_BYTES:
            raise DecisionLogError(f"max_bytes must be >= {MAX_LINE_BYTES}, got {max_bytes}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        existing = segments(self.directory)
        self._index = int(SEGMENT_PATTERN.match(existing[-1].name).group(1)) if existing else 1  # type: ignore[union-attr]
        self._fd = self._open()

    def _open(self) -> int:
        path = self.directory / f"decisions-{self._index:06d}.jsonl"
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one decision as one line; rotate first if the segment would pass ``max_bytes``."""
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
        if len(line) > MAX_LINE_BYTES:
            raise DecisionLogError(f"decision record of {len(line)} bytes exceeds {MAX_LINE_BYTES}")
        with self._lock:
            if os.fstat(self._fd).st_size + len(line) > self.max_bytes:
                os.close(self._fd)
                self._index += 1
                self._fd = self._open()
            os.write(self._fd, line)

    def close(self) -> None:
        """Close the current segment (appending after this raises)."""
        with self._lock:
            os.close(self._fd)


def segments(directory: str | Path) -> list[Path]:
    """The log's segment files, oldest first."""
    found = [p for p in Path(directory).iterdir() if SEGMENT_PATTERN.match(p.name) and p.is_file()]
    return sorted(found)


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):  # a write cut short by a crash: the decision was not served
                return
            if len(line) > MAX_LINE_BYTES:
                raise DecisionLogError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes")
            try:
                yield number, json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise DecisionLogError(f"{path}:{number}: not a JSON line") from None


def read_decisions(directory: str | Path) -> list[dict[str, Any]]:
    """Every decision of a log directory, oldest first, each line checked."""
    rows: list[dict[str, Any]] = []
    files = segments(directory)
    if not files:
        raise DecisionLogError(f"{directory}: no decisions-NNNNNN.jsonl segments; serve with --log-dir first")
    for path in files:
        for number, row in _json_lines(path):
            where = f"{path}:{number}"
            if not isinstance(row, dict):
                raise DecisionLogError(f"{where}: a decision line is a JSON object")
            features, propensity = row.get("features"), row.get("propensity")
            if not isinstance(features, dict) or not all(
                isinstance(v, int | float) and math.isfinite(v) for v in features.values()
            ):
                raise DecisionLogError(f"{where}: 'features' must map names to finite numbers")
            if not isinstance(propensity, int | float) or not 0 < propensity <= 1:
                raise DecisionLogError(f"{where}: 'propensity' must be in (0, 1], got {propensity!r}")
            if not isinstance(row.get("incentive"), str) or not isinstance(row.get("request_id"), str):
                raise DecisionLogError(f"{where}: 'incentive' and 'request_id' must be strings")
            rows.append(row)
    return rows


def read_orders(path: str | Path) -> dict[str, float]:
    """Attributed margin per request id from an orders log (JSON lines; margins of a request add up)."""
    margins: dict[str, float] = {}
    for number, row in _json_lines(Path(path)):
        request_id, margin = (row.get("request_id"), row.get("margin")) if isinstance(row, dict) else (0, 0)
        if (
            not isinstance(request_id, str)
            or not isinstance(margin, int | float)
            or not math.isfinite(margin)
        ):
            raise DecisionLogError(
                f"{path}:{number}: an order line is {{'request_id': str, 'margin': finite number}}"
            )
        margins[request_id] = margins.get(request_id, 0.0) + float(margin)
    return margins


def join_feedback(
    decisions: Sequence[Mapping[str, Any]],
    orders: Mapping[str, float],
    feature_names: Sequence[str],
    feature_scales: Sequence[float],
    action_names: Sequence[str],
    clip: tuple[float, float] = (0.0, 10.0),
) -> dict[str, Any]:
    """Decisions plus attributed margins as OBP ``BanditFeedback`` (context normalized as the policy sees it).

    Also returns ``action_mask`` (the allowed incentives of each round), ``request_id`` and
    ``raw_context``, which OPE needs to evaluate a new policy on the same rounds.
    """
    index = {name: i for i, name in enumerate(action_names)}
    n, k = len(decisions), len(action_names)
    raw = np.zeros((n, len(feature_names)))
    action = np.zeros(n, dtype=np.int64)
    mask = np.zeros((n, k), dtype=np.bool_)
    for row, decision in enumerate(decisions):
        features = decision["features"]
        if set(features) != set(feature_names):
            raise DecisionLogError(
                f"decision {decision['request_id']!r}: features {sorted(features)} differ from the policy's"
            )
        raw[row] = [features[name] for name in feature_names]
        allowed = decision.get("allowed") or list(action_names)
        if decision["incentive"] not in index or not all(a in index for a in allowed):
            raise DecisionLogError(f"decision {decision['request_id']!r}: an incentive is not the policy's")
        action[row] = index[decision["incentive"]]
        mask[row, [index[a] for a in allowed]] = True
    scales = np.asarray(feature_scales, dtype=np.float64)
    context = np.clip(raw / scales, clip[0], clip[1]).astype(np.float32)
    return {
        "n_rounds": n,
        "n_actions": k,
        "context": context,
        "raw_context": raw,
        "action": action,
        "reward": np.array([orders.get(str(d["request_id"]), 0.0) for d in decisions], dtype=np.float64),
        "pscore": np.array([float(d["propensity"]) for d in decisions], dtype=np.float64),
        "position": np.zeros(n, dtype=np.int64),
        "action_mask": mask,
        "request_id": [str(d["request_id"]) for d in decisions],
    }
