"""Twins: real customers as shoppers, each drawn from her own posterior instead of the prior.

Scenario: ``shopgym calibrate LOG --twins twins.parquet`` fits the customer-base models to a
shop's log and writes one row per real customer: her history at the end of calibration
(repeat transactions ``x``, recency ``t_x``, age ``T``, spend) and her posterior. A scenario
whose ``population.twins`` names that file starts every run from those customers: row ``i`` of
the population is the customer ``customer_ids[i]``, already acquired, with her orders, recency,
spend and tenure as observable state, and her latent traits drawn from her posterior:

* Pareto/NBD (Schmittlein, Morrison & Colombo 1987; posterior as in Fader & Hardie 2005, "A
  note on deriving the Pareto/NBD model"): alive at ``T`` with probability ``P(alive)``; then
  ``lambda ~ Gamma(r + x, alpha + T)`` and ``mu ~ Gamma(s, beta + T)``; else she died at
  ``tau`` in ``(t_x, T]`` with density proportional to ``(alpha + tau)^-(r+x) (beta + tau)^-(s+1)``
  (drawn by inverting its CDF on a grid of :data:`DEATH_GRID_POINTS` points), and
  ``lambda ~ Gamma(r + x, alpha + tau)``, ``mu ~ Gamma(s + 1, beta + tau)``;
* BG/NBD (Fader, Hardie & Lee 2005): alive with ``P(alive)``; then
  ``lambda ~ Gamma(r + x, alpha + T)``, ``p ~ Beta(a, b + x)``; else (``x > 0`` only) she
  dropped out after her last purchase: ``lambda ~ Gamma(r + x, alpha + t_x)``,
  ``p ~ Beta(a + 1, b + x - 1)``;
* Gamma-Gamma spend (Fader & Hardie 2013): ``nu ~ Gamma(q + p x, gamma + x zbar)``.

Rates are per week, Gamma distributions in (shape, rate). A Pareto/NBD shopper alive at ``T``
gets a fresh ``Exp(1)`` lifetime budget: an exponential lifetime is memoryless. Her other traits
(loss aversion, price sensitivity, uplift class, ...) are the scenario's prior draws: a
transaction log does not identify them (``docs/CALIBRATION.md``).

The file is untrusted input. Before any value is used, its size, row count, columns, types,
ranges and finiteness, and the prior in its metadata, are checked, and a problem is refused in
one bounded line naming the column, the value and the fix (:class:`TwinsError`). Only Arrow
types are read (no pickled pandas objects).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

HOURS_PER_WEEK = 168.0
#: Format tag of the prior in the file's metadata (key :data:`METADATA_KEY`).
TWINS_FORMAT = "shopgym-twins/1"
METADATA_KEY = b"shopgym.twins"
#: Largest twins file read, in bytes, and most rows: the scenario's population bound.
MAX_TWINS_BYTES = 1 << 30
MAX_TWINS_ROWS = 5_000_000
#: Longest customer id kept (a hash is 16 characters; a shop's ids are rarely longer than 64).
MAX_ID_CHARS = 128
#: Largest metadata entry read, in bytes.
MAX_METADATA_BYTES = 4096
#: Largest model parameter accepted (the scenario's bound, ``sim.params.MAX_VALUE``).
MAX_PARAMETER = 1e6
#: Grid points of the inverse-CDF draw of a Pareto/NBD death time (the density is smooth and
#: monotone on (t_x, T]; 64 points put the quadrature error far below the Monte-Carlo error).
DEATH_GRID_POINTS = 64
#: Longest message excerpt of a user's value.
_ECHO_CHARS = 40

#: Columns of a twins file: name -> (Arrow type family, meaning). The history first, then the
#: posterior summaries a person reads; the simulator draws from the prior in the metadata and
#: the history (conjugate updates) and takes ``p_alive`` from the file.
TWINS_COLUMNS: dict[str, tuple[str, str]] = {
    "customer_id": ("string", "the log's customer id (or its hash with --pseudonymize)"),
    "repeats": ("int", "x: repeat transactions (customer-days after the first) in calibration"),
    "recency_weeks": ("float", "t_x: weeks from her first to her last transaction"),
    "age_weeks": ("float", "T: weeks from her first transaction to the end of calibration"),
    "mean_spend": ("float", "zbar: mean value of her repeat transactions, dollars (0 if none)"),
    "total_spend": ("float", "value of all her calibration transactions, dollars"),
    "p_alive": ("float", "posterior probability that she is alive at the end of calibration"),
    "rate_per_week_if_alive": ("float", "posterior mean purchase rate per week, given alive"),
    "order_value": ("float", "Gamma-Gamma posterior mean transaction value, dollars"),
}


class TwinsError(ValueError):
    """A twins file or its use is invalid; the one-line message names the field, value and fix."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _ECHO_CHARS else text[: _ECHO_CHARS - 4] + " ..."


@dataclass(frozen=True)
class TwinsPrior:
    """The fitted population the posteriors update (rates per week)."""

    attrition: Literal["pareto_nbd", "bgnbd"]
    r: float
    alpha_weeks: float
    s: float  # Pareto/NBD lifetime shape (NaN under BG/NBD)
    beta_weeks: float  # Pareto/NBD lifetime rate (NaN under BG/NBD)
    a: float  # BG/NBD dropout Beta(a, b) (NaN under Pareto/NBD)
    b: float
    p: float  # Gamma-Gamma
    q: float
    gamma: float
    calibration_end: str

    def as_metadata(self) -> dict[str, Any]:
        """The prior as the JSON written into the file's metadata."""
        dropout = (
            {"lifetime": {"s": self.s, "beta_weeks": self.beta_weeks}}
            if self.attrition == "pareto_nbd"
            else {"dropout": {"a": self.a, "b": self.b}}
        )
        return {
            "format": TWINS_FORMAT,
            "attrition": self.attrition,
            "purchase": {"r": self.r, "alpha_weeks": self.alpha_weeks},
            **dropout,
            "spend": {"p": self.p, "q": self.q, "gamma": self.gamma},
            "calibration_end": self.calibration_end,
        }


@dataclass(frozen=True)
class Twins:
    """A validated twins file, rows sorted by first purchase (oldest customer first)."""

    customer_id: NDArray[np.str_]
    repeats: I64
    recency_weeks: F64
    age_weeks: F64
    mean_spend: F64
    total_spend: F64
    p_alive: F64
    prior: TwinsPrior
    source_hash: str  # sha256 of the file, 16 hex digits

    @property
    def size(self) -> int:
        """Customers (rows)."""
        return int(self.repeats.size)

    def take(self, rows: NDArray[np.int64]) -> Twins:
        """The customers at ``rows`` (a journey's one customer), with the same prior."""
        return dataclasses.replace(
            self,
            customer_id=self.customer_id[rows],
            repeats=self.repeats[rows],
            recency_weeks=self.recency_weeks[rows],
            age_weeks=self.age_weeks[rows],
            mean_spend=self.mean_spend[rows],
            total_spend=self.total_spend[rows],
            p_alive=self.p_alive[rows],
        )


@dataclass(frozen=True)
class TwinTraits:
    """One draw of every twin's latent customer-base traits from her posterior."""

    alive: NDArray[np.bool_]
    rate_per_week: F64
    dropout_prob: F64  # BG/NBD (0 under Pareto/NBD)
    dropout_rate_per_week: F64  # Pareto/NBD (0 under BG/NBD)
    spend_nu: F64
    died_weeks_ago: F64  # weeks before the end of calibration she died (NaN if alive)


# ---- writing ---------------------------------------------------------------------------------------
def write_twins(frame: pd.DataFrame, prior: TwinsPrior, path: Path) -> None:
    """Write ``frame`` (the :data:`TWINS_COLUMNS`) with ``prior`` in its metadata, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sim.io import atomic_write_bytes

    table = pa.Table.from_pandas(frame[list(TWINS_COLUMNS)], preserve_index=False)
    # Only the prior as metadata: no pandas metadata, so nothing but Arrow types is ever read back.
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(prior.as_metadata()).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


# ---- reading and checking --------------------------------------------------------------------------
def read_twins(path: str | Path) -> Twins:
    """Read and check a twins file; raises :class:`TwinsError` in one bounded line.

    The result is cached by the file's path, size and modification time, so a scenario checked
    at load and the simulations built from it read the file once.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise TwinsError(
            f"population.twins: file {_shown(str(path))} not found; write it with "
            "`shopgym calibrate LOG --twins FILE`"
        ) from None
    if not path.is_file():
        raise TwinsError(f"population.twins: {_shown(str(path))} is not a file; give a .parquet file")
    if stat.st_size > MAX_TWINS_BYTES:
        raise TwinsError(
            f"population.twins: {path.name} has {stat.st_size:,} bytes, over {MAX_TWINS_BYTES:,}; "
            "calibrate a sample of the customers"
        )
    return _read_twins_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_twins_cached(path: str, size: int, mtime_ns: int) -> Twins:
    """:func:`read_twins` for one version of one file (``size`` and ``mtime_ns`` key the cache)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = Path(path).name
    data = Path(path).read_bytes()
    try:
        meta_file = pq.ParquetFile(io.BytesIO(data))
        schema = meta_file.schema_arrow
        rows = meta_file.metadata.num_rows
    except (pa.ArrowException, OSError, ValueError) as problem:
        reason = " ".join(str(problem).split())[:120]
        raise TwinsError(
            f"population.twins: {name} is not a readable parquet file ({reason}); rewrite it with "
            "`shopgym calibrate LOG --twins FILE`"
        ) from None
    if not 1 <= rows <= MAX_TWINS_ROWS:
        raise TwinsError(
            f"population.twins: {name} has {rows:,} rows; between 1 and {MAX_TWINS_ROWS:,} are allowed"
        )
    prior = _prior_from_metadata(schema.metadata or {}, name)
    for column, (family, _) in TWINS_COLUMNS.items():
        if column not in schema.names:
            raise TwinsError(
                f"population.twins: {name} lacks column {column!r}; it needs "
                f"{', '.join(TWINS_COLUMNS)} (write it with `shopgym calibrate LOG --twins FILE`)"
            )
        arrow_type = schema.field(column).type
        ok = {
            "string": pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type),
            "int": pa.types.is_integer(arrow_type),
            "float": pa.types.is_floating(arrow_type),
        }[family]
        if not ok:
            raise TwinsError(
                f"population.twins: column {column!r} of {name} has type {arrow_type}; it must be {family}"
            )
    try:
        table = pq.read_table(io.BytesIO(data), columns=list(TWINS_COLUMNS))
    except (pa.ArrowException, OSError, ValueError) as problem:
        reason = " ".join(str(problem).split())[:120]
        raise TwinsError(f"population.twins: {name} could not be read ({reason})") from None
    columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in TWINS_COLUMNS}
    twins = _checked(columns, prior, name, hashlib.sha256(data).hexdigest()[:16])
    order = np.argsort(-twins.age_weeks, kind="stable")  # oldest first: acquisition order
    return twins.take(order)


def _checked(columns: dict[str, Any], prior: TwinsPrior, name: str, digest: str) -> Twins:
    """The columns as a :class:`Twins` once every value is in range; else :class:`TwinsError`."""
    ids = columns["customer_id"]
    if pd.isna(ids).any():
        raise TwinsError(
            f"population.twins: column 'customer_id' of {name} has empty ids; every row needs one"
        )
    ids = ids.astype(str)
    longest = int(np.char.str_len(ids).max()) if ids.size else 0
    if longest > MAX_ID_CHARS:
        raise TwinsError(
            f"population.twins: column 'customer_id' of {name} has an id of {longest} characters, over "
            f"{MAX_ID_CHARS}; shorten the ids or use --pseudonymize"
        )
    if np.unique(ids).size != ids.size:
        raise TwinsError(f"population.twins: column 'customer_id' of {name} repeats ids; each customer once")
    floats = {c: np.asarray(columns[c], dtype=np.float64) for c in TWINS_COLUMNS if c != "customer_id"}
    bounds = {
        "repeats": (0.0, 1e6),
        "recency_weeks": (0.0, 1e4),
        "age_weeks": (0.0, 1e4),
        "mean_spend": (0.0, 1e9),
        "total_spend": (0.0, 1e12),
        "p_alive": (0.0, 1.0),
        "rate_per_week_if_alive": (0.0, 1e6),
        "order_value": (0.0, 1e9),
    }
    for column, (low, high) in bounds.items():
        values = floats[column]
        bad = ~np.isfinite(values) | (values < low) | (values > high)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise TwinsError(
                f"population.twins: column {column!r} of {name} has {int(bad.sum())} values outside "
                f"[{low:g}, {high:g}] or not finite (first: row {row}, {_shown(float(values[row]))}); "
                "rewrite the file with `shopgym calibrate`"
            )
    late = floats["recency_weeks"] > floats["age_weeks"] + 1e-9
    if late.any():
        row = int(np.flatnonzero(late)[0])
        raise TwinsError(
            f"population.twins: {name} row {row} has recency_weeks {floats['recency_weeks'][row]:g} > "
            f"age_weeks {floats['age_weeks'][row]:g}; her last purchase must precede the end of calibration"
        )
    return Twins(
        customer_id=ids,
        repeats=floats["repeats"].astype(np.int64),
        recency_weeks=floats["recency_weeks"],
        age_weeks=floats["age_weeks"],
        mean_spend=floats["mean_spend"],
        total_spend=floats["total_spend"],
        p_alive=floats["p_alive"],
        prior=prior,
        source_hash=digest,
    )


def _prior_from_metadata(metadata: dict[bytes, bytes], name: str) -> TwinsPrior:
    """The prior written by :func:`write_twins`, every value checked."""
    raw = metadata.get(METADATA_KEY)
    fix = "rewrite the file with `shopgym calibrate LOG --twins FILE`"
    if raw is None or len(raw) > MAX_METADATA_BYTES:
        raise TwinsError(
            f"population.twins: {name} lacks its prior (metadata {METADATA_KEY.decode()!r}, at most "
            f"{MAX_METADATA_BYTES} bytes); {fix}"
        )
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise TwinsError(f"population.twins: the prior in {name} is not JSON; {fix}") from None
    if not isinstance(data, dict) or data.get("format") != TWINS_FORMAT:
        raise TwinsError(f"population.twins: {name} is not a {TWINS_FORMAT} file; {fix}")
    attrition = data.get("attrition")
    if attrition not in ("pareto_nbd", "bgnbd"):
        raise TwinsError(
            f"population.twins: prior attrition {_shown(attrition)} in {name}; it must be pareto_nbd or bgnbd"
        )
    dropout_key, dropout_names = (
        ("lifetime", ("s", "beta_weeks")) if attrition == "pareto_nbd" else ("dropout", ("a", "b"))
    )
    values: dict[str, float] = {}
    for group, names in (
        ("purchase", ("r", "alpha_weeks")),
        (dropout_key, dropout_names),
        ("spend", ("p", "q", "gamma")),
    ):
        block = data.get(group)
        for key in names:
            value = block.get(key) if isinstance(block, dict) else None
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or not 0.0 < value <= MAX_PARAMETER
            ):
                raise TwinsError(
                    f"population.twins: prior {group}.{key} in {name} is {_shown(value)}; it must be a "
                    f"number in (0, {MAX_PARAMETER:g}]; {fix}"
                )
            values[key] = float(value)
    end = data.get("calibration_end")
    if not isinstance(end, str) or len(end) > 32:
        raise TwinsError(f"population.twins: prior calibration_end in {name} is {_shown(end)}; {fix}")
    nan = float("nan")
    return TwinsPrior(
        attrition="pareto_nbd" if attrition == "pareto_nbd" else "bgnbd",
        r=values["r"],
        alpha_weeks=values["alpha_weeks"],
        s=values.get("s", nan),
        beta_weeks=values.get("beta_weeks", nan),
        a=values.get("a", nan),
        b=values.get("b", nan),
        p=values["p"],
        q=values["q"],
        gamma=values["gamma"],
        calibration_end=end,
    )


# ---- drawing from the posteriors -------------------------------------------------------------------
def pareto_nbd_death_weeks(prior: TwinsPrior, twins: Twins, u: F64) -> F64:
    """Death times ``tau`` in ``(t_x, T]`` (weeks after her first purchase) by inverting their CDF.

    The density, given that she died before ``T``, is proportional to
    ``(alpha + tau)^-(r+x) (beta + tau)^-(s+1)``; the CDF is integrated by the trapezoid rule on
    :data:`DEATH_GRID_POINTS` points. Customers whose last purchase is at ``T`` die at ``T``.
    """
    x = twins.repeats.astype(np.float64)
    low, high = twins.recency_weeks, twins.age_weeks
    steps = np.linspace(0.0, 1.0, DEATH_GRID_POINTS)
    tau = low[:, None] + (high - low)[:, None] * steps[None, :]
    log_density = -(prior.r + x)[:, None] * np.log(prior.alpha_weeks + tau) - (prior.s + 1.0) * np.log(
        prior.beta_weeks + tau
    )
    density = np.exp(log_density - log_density.max(axis=1, keepdims=True))
    cdf = np.concatenate(
        [np.zeros((x.size, 1)), np.cumsum((density[:, 1:] + density[:, :-1]) / 2.0, axis=1)], axis=1
    )
    cdf /= cdf[:, -1:]
    target = u[:, None]
    above = np.minimum((cdf < target).sum(axis=1), DEATH_GRID_POINTS - 1)
    below = np.maximum(above - 1, 0)
    rows = np.arange(x.size)
    c0, c1 = cdf[rows, below], cdf[rows, above]
    share = np.where(c1 > c0, (u - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
    return np.asarray(tau[rows, below] + share * (tau[rows, above] - tau[rows, below]), dtype=np.float64)


def draw_twin_traits(twins: Twins, rng: np.random.Generator) -> TwinTraits:
    """Draw every twin's alive state, purchase rate, attrition and spend from her posterior.

    A fixed number of values per twin is drawn whatever her state (common random numbers).
    """
    prior = twins.prior
    n = twins.size
    x = twins.repeats.astype(np.float64)
    t_x, age = twins.recency_weeks, twins.age_weeks
    u_alive, u_death = rng.random(n), rng.random(n)
    alive = u_alive < twins.p_alive
    shape = prior.r + x
    if prior.attrition == "pareto_nbd":
        death = pareto_nbd_death_weeks(prior, twins, u_death)
        until = np.where(alive, age, death)
        rate = rng.gamma(shape, 1.0 / (prior.alpha_weeks + until))
        mu = rng.gamma(np.where(alive, prior.s, prior.s + 1.0), 1.0 / (prior.beta_weeks + until))
        dropout_prob, dropout_rate = np.zeros(n), mu
    else:
        alive |= x == 0  # BG/NBD: nobody drops out before her first repeat purchase
        death = t_x
        until = np.where(alive, age, t_x)
        rate = rng.gamma(shape, 1.0 / (prior.alpha_weeks + until))
        dropout_prob = rng.beta(
            np.where(alive, prior.a, prior.a + 1.0), np.where(alive, prior.b + x, prior.b + x - 1.0)
        )
        dropout_rate = np.zeros(n)
    nu = rng.gamma(prior.q + prior.p * x, 1.0 / (prior.gamma + x * twins.mean_spend))
    return TwinTraits(
        alive=alive,
        rate_per_week=rate,
        dropout_prob=dropout_prob,
        dropout_rate_per_week=dropout_rate,
        spend_nu=nu,
        died_weeks_ago=np.where(alive, np.nan, age - death),
    )
