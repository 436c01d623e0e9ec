"""The event table: the one typed representation of OTTO sessions used by every later stage.

OTTO ships sessions as JSONL with string event types; everything downstream works on a flat,
columnar table (one row per event) so that graph building, splitting and baselines are vectorised.
See ``docs/architecture.md`` ("Event table") for the contract this module encodes.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

#: OTTO event types; the position is the ``type`` code stored in the event table.
EVENT_TYPES: tuple[str, str, str] = ("clicks", "carts", "orders")
#: ``"clicks" -> 0``, ``"carts" -> 1``, ``"orders" -> 2``.
EVENT_TYPE_CODES: Mapping[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}
CLICK, CART, ORDER = 0, 1, 2

#: Polars schema of the event table (column order is part of the contract).
EVENT_SCHEMA: pl.Schema = pl.Schema({"session": pl.Int32, "aid": pl.Int32, "ts": pl.Int64, "type": pl.Int8})
EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names())

#: First timestamp of the OTTO train file (2022-07-31 22:00:00 UTC) in Unix milliseconds.
OTTO_TRAIN_START_MS: int = 1_659_304_800_000
MS_PER_DAY: int = 86_400_000
#: OTTO: four weeks of train sessions followed by one week of test sessions.
OTTO_TRAIN_DAYS: int = 28
OTTO_TEST_DAYS: int = 7

#: Plausible range of a Unix-millisecond timestamp. Anything below 1e11 ms (1973) is almost surely
#: Unix *seconds* (those are ~1.66e9 for OTTO); anything at or above 1e14 ms (year 5138) is almost
#: surely microseconds. Both would silently corrupt every time-based split, so they are rejected.
TS_MIN_MS: int = 100_000_000_000
TS_MAX_MS: int = 100_000_000_000_000
INT32_MAX: int = 2**31 - 1


def empty_events() -> pl.DataFrame:
    """An event table with no rows but the contract's columns and dtypes."""
    return pl.DataFrame(schema=EVENT_SCHEMA)


def event_type_code(name: str) -> int:
    """``"carts" -> 1``; raises ``KeyError`` naming the valid types for anything else."""
    try:
        return EVENT_TYPE_CODES[name]
    except KeyError:
        raise KeyError(f"unknown event type {name!r}; expected one of {EVENT_TYPES}") from None


def event_type_names(codes: pl.Series | pl.Expr) -> pl.Series | pl.Expr:
    """Map ``type`` codes back to OTTO's names (e.g. for export or readable reports)."""
    mapping = {code: name for code, name in enumerate(EVENT_TYPES)}
    return codes.replace_strict(mapping, return_dtype=pl.Utf8)


def check_type_codes(values: pl.Series, name: str) -> pl.Series:
    """A typed candidates/labels ``type`` column as Int8 codes; raises naming the first bad row.

    A null is an untyped row mixed into a typed table; anything else must be a valid code.
    """
    if values.null_count():
        row = int(values.is_null().arg_true()[0])
        raise ValueError(
            f"{name}: row {row}, field 'type': null in a typed table (typed and untyped rows cannot "
            "be mixed; give every row a type, or drop the 'type' column so one list serves all types)"
        )
    codes = values.cast(pl.Int8, strict=False)
    bad = codes.is_null() | ~codes.is_in(list(EVENT_TYPE_CODES.values()))
    if bad.any():
        row = int(bad.arg_true()[0])
        raise ValueError(
            f"{name}: row {row}, field 'type': unknown event type code {values[row]!r} "
            f"(expected one of {dict(EVENT_TYPE_CODES)})"
        )
    return codes


def conform_events(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and cast the contract columns in contract order.

    Casting is *strict*, so a value that does not fit (e.g. an aid above Int32) raises instead of
    wrapping. Use it for frames built in memory (tests, generators), not as a validator.
    """
    missing = [name for name in EVENT_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"event table lacks column(s) {missing}; has {frame.columns}")
    return frame.select(pl.col(name).cast(dtype, strict=True) for name, dtype in EVENT_SCHEMA.items())
