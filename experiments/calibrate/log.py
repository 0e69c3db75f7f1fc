"""Reading and checking a transaction log: one row per order, every column checked before use."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.calibrate.common import (
    CalibrationError,
    DuplicatePolicy,
    shown,
)

MIN_CUSTOMERS = 100
#: Most orders read from a log (``--max-rows``), an assumption: the fits and the simulated check
#: grow with the customers, so a larger log should be calibrated on a sample of its customers.
MAX_LOG_ROWS = 1_000_000
#: Largest log file read (its bytes are read whole, to hash them).
MAX_LOG_BYTES = 512 * 1024 * 1024
#: Default plausible window of order dates: from 1970 to a year after today (``--earliest``,
#: ``--latest``). A date outside it is a typo or a unit error and would stretch the fit over decades.
EARLIEST_ORDER = pd.Timestamp("1970-01-01")
LATEST_ORDER_AHEAD = pd.Timedelta(days=366)
#: Median order values outside this range, in dollars, are implausible for a shop (an assumption:
#: amounts in cents read as $3,500 orders, amounts in thousands as $0.04 orders); they warn.
PLAUSIBLE_MEDIAN_ORDER = (1.0, 1000.0)


def latest_order_default() -> pd.Timestamp:
    """The default latest plausible order date: a year after today."""
    return pd.Timestamp.today().normalize() + LATEST_ORDER_AHEAD


@dataclass(frozen=True)
class LogColumns:
    """Column names of the transaction log."""

    customer: str = "customer_id"
    timestamp: str = "timestamp"
    amount: str = "amount"


@dataclass(frozen=True)
class TransactionLog:
    """A validated log: one row per order, sorted by time; ``warnings`` says what was odd."""

    frame: pd.DataFrame  # columns customer (str), time (datetime64), amount (float)
    source_hash: str
    warnings: tuple[str, ...]


# ---- reading and checking the log ----------------------------------------------------------------
def read_transaction_log(
    path: str | Path,
    columns: LogColumns = LogColumns(),
    date_format: str | None = None,
    duplicates: DuplicatePolicy = "drop",
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    max_rows: int = MAX_LOG_ROWS,
) -> TransactionLog:
    """Read a CSV or parquet order log and validate it; raises :class:`CalibrationError`.

    A file over ``MAX_LOG_BYTES`` or ``max_rows`` rows is refused before it is parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"transaction log not found: {path}")
    size = path.stat().st_size
    if size > MAX_LOG_BYTES:
        raise CalibrationError(f"transaction log {path}: {size:,} bytes; at most {MAX_LOG_BYTES:,}")
    raw_bytes = path.read_bytes()
    parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if parquet:
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(io.BytesIO(raw_bytes)).metadata.num_rows
        else:
            rows = raw_bytes.count(b"\n") - 1 + (not raw_bytes.endswith(b"\n"))  # less the header
        if rows > max_rows:
            raise CalibrationError(
                f"transaction log {path}: {rows:,} rows; at most {max_rows:,} (--max-rows; "
                "calibrating a sample of customers, all of each one's orders, gives the same fits)"
            )
        if parquet:
            raw = pd.read_parquet(io.BytesIO(raw_bytes))
        else:
            raw = pd.read_csv(io.BytesIO(raw_bytes), dtype={columns.customer: str})
    except CalibrationError:
        raise
    except (ValueError, OSError, RecursionError) as problem:
        reason = " ".join(str(problem).split())[:200]
        raise CalibrationError(
            f"transaction log {path} could not be read as {'parquet' if parquet else 'CSV'} "
            f"(a table with a header row, one row per order): {reason}"
        ) from None
    digest = hashlib.sha256(raw_bytes).hexdigest()[:16]
    return validate_log(raw, columns, date_format, duplicates, digest, window)


def validate_log(
    raw: pd.DataFrame,
    columns: LogColumns = LogColumns(),
    date_format: str | None = None,
    duplicates: DuplicatePolicy = "drop",
    source_hash: str = "",
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> TransactionLog:
    """Check a raw order table and return it as a :class:`TransactionLog`.

    Order times are the shop's local wall-clock times: a timestamp with a UTC offset keeps its
    local day and hour (offsets may differ row to row, as across daylight saving). Orders dated
    outside ``window`` (default :data:`EARLIEST_ORDER` to a year after today) are refused.
    """
    wanted = {"customer": columns.customer, "timestamp": columns.timestamp, "amount": columns.amount}
    missing = [f"{role} column {shown(name)}" for role, name in wanted.items() if name not in raw.columns]
    if missing:
        names = [shown(str(c), 24) for c in raw.columns[:10]]
        more = f" and {len(raw.columns) - 10} more" if len(raw.columns) > 10 else ""
        raise CalibrationError(
            f"transaction log lacks {', '.join(missing)}; it has columns [{', '.join(names)}]{more}. "
            "Name them with --customer-col, --time-col and --amount-col."
        )
    if raw.empty:
        raise CalibrationError("transaction log has no rows")
    customer = raw[columns.customer]
    if customer.isna().any():
        row = int(np.flatnonzero(customer.isna().to_numpy())[0])
        raise CalibrationError(
            f"column {shown(columns.customer)} is empty in {int(customer.isna().sum())} rows "
            f"(first: row {row}); every order needs a customer id"
        )
    stamps = raw[columns.timestamp]
    time = local_times(stamps, date_format, columns.timestamp)
    bad = time.isna().to_numpy()
    if bad.any():
        rows = np.flatnonzero(bad)[:3]
        examples = ", ".join(f"row {r}: {shown(stamps.iloc[r])}" for r in rows)
        raise CalibrationError(
            f"column {shown(columns.timestamp)} has {int(bad.sum())} unparsable dates ({examples}); "
            "fix them or give their format with --date-format (e.g. %Y%m%d)"
        )
    earliest, latest = window or (EARLIEST_ORDER, latest_order_default())
    outside = ((time < earliest) | (time > latest)).to_numpy()
    if outside.any():
        rows = np.flatnonzero(outside)[:3]
        examples = ", ".join(f"row {r}: {shown(stamps.iloc[r])}" for r in rows)
        raise CalibrationError(
            f"column {shown(columns.timestamp)} has {int(outside.sum())} orders dated outside the plausible "
            f"window {earliest.date()} to {latest.date()} ({examples}); fix them, or set the window "
            "with --earliest and --latest"
        )
    amount = pd.to_numeric(raw[columns.amount], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(amount) | (amount < 0)
    if bad.any():
        rows = np.flatnonzero(bad)[:3]
        examples = ", ".join(f"row {r}: {shown(raw[columns.amount].iloc[r])}" for r in rows)
        raise CalibrationError(
            f"column {shown(columns.amount)} has {int(bad.sum())} negative, missing or non-finite order "
            f"values ({examples}); order values must be finite dollars >= 0 "
            "(drop refunds or net them out first)"
        )
    frame = pd.DataFrame(
        {"customer": customer.astype(str).to_numpy(), "time": time.to_numpy(), "amount": amount}
    )
    notes: list[str] = []
    duplicated = frame.duplicated()
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())[:3]
        text = (
            f"{int(duplicated.sum())} duplicate rows (same customer, time and value; first at rows "
            f"{', '.join(str(r) for r in rows)})"
        )
        if duplicates == "error":
            raise CalibrationError(
                f"transaction log has {text}; drop them with --duplicates drop or keep them"
            )
        if duplicates == "drop":
            frame = frame[~duplicated]
            notes.append(f"dropped {text}; --duplicates keep counts them as separate orders")
        else:
            notes.append(f"kept {text} as separate orders; --duplicates drop removes them")
    median = float(np.median(frame["amount"].to_numpy()))
    low, high = PLAUSIBLE_MEDIAN_ORDER
    if median > high:
        notes.append(
            f"the median order value is ${median:,.2f}, implausible for a shop (expected ${low:g} to "
            f"${high:,.0f}); if the amounts are in cents, divide them by 100"
        )
    elif median < low:
        notes.append(
            f"the median order value is ${median:,.4g}, implausible for a shop (expected ${low:g} to "
            f"${high:,.0f}); check the amount column's unit (dollars per order)"
        )
    customers = frame["customer"].nunique()
    if customers < MIN_CUSTOMERS:
        notes.append(
            f"only {customers} customers (fewer than {MIN_CUSTOMERS}): the fitted parameters will be "
            "imprecise; see their standard errors"
        )
    frame = frame.sort_values(["time", "customer"], kind="stable").reset_index(drop=True)
    return TransactionLog(frame=frame, source_hash=source_hash, warnings=tuple(notes))


# A clock time followed by a UTC offset ("10:30:00+02:00", "10:30Z"): the offset is cut off,
# leaving the shop's local wall-clock time.
_UTC_OFFSET = r"(?P<clock>\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"


def local_times(stamps: pd.Series, date_format: str | None = None, column: str = "timestamp") -> pd.Series:
    """Order times as naive local wall-clock times (NaT where unparsable), never converted to UTC.

    Days are the shop's local days: an evening order stays on its evening, whatever its offset.
    """
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        return stamps.dt.tz_localize(None)  # the wall-clock time in the column's own zone
    if pd.api.types.is_datetime64_dtype(stamps.dtype):
        return stamps
    text = stamps.astype(str).str.strip()
    fmt = date_format
    if fmt is None or "%z" in fmt or "%Z" in fmt:
        text = text.str.replace(_UTC_OFFSET, r"\g<clock>", regex=True)
        fmt = None if fmt is None else fmt.replace("%z", "").replace("%Z", "").strip()
    try:
        time = pd.to_datetime(text, format=fmt, errors="coerce")
        if fmt is None and time.isna().any() and text.str.match(r"\d{4}-\d{2}-\d{2}").all():
            time = pd.to_datetime(text, format="ISO8601", errors="coerce")  # ISO of mixed precision
    except (ValueError, TypeError, OverflowError):
        raise CalibrationError(
            f"column {shown(column)} could not be parsed as dates with format {shown(fmt)}; "
            "write them as ISO dates (2024-01-31 or 2024-01-31T18:05:00+01:00) or give --date-format"
        ) from None
    if isinstance(time.dtype, pd.DatetimeTZDtype):
        time = time.dt.tz_localize(None)
    return time


def cdnow_transactions() -> pd.DataFrame:
    """The CDNOW cohort's orders (2,357 customers, Jan 1997 to Jun 1998) from the ``lifetimes`` package.

    Columns ``customer_id``, ``timestamp`` (ISO date) and ``amount`` (dollars). The data are read
    from the installed peer library (``pip install lifetimes``), not shipped with shopgym.
    """
    try:
        import lifetimes
    except ImportError:
        raise CalibrationError(
            "the CDNOW example needs the lifetimes package: pip install lifetimes"
        ) from None
    path = Path(lifetimes.__file__).parent / "datasets" / "CDNOW_sample.txt"
    raw = pd.read_csv(
        path, sep=r"\s+", header=None, names=["master_id", "customer_id", "date", "cds", "amount"]
    )
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"].astype(str),
            "timestamp": pd.to_datetime(raw["date"].astype(str), format="%Y%m%d").dt.strftime("%Y-%m-%d"),
            "amount": raw["amount"].astype(np.float64),
        }
    )
