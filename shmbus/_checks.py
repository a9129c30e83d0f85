"""Argument checks at the API edge: a value the C core or the log cannot hold (an
offset past int64, a timestamp past 2**63 ns, a bool where an int is meant, a zero
budget) is refused here with a clear error, instead of being stored and poisoning
every later read (a committed offset of 2**64 once made every member's poll raise
OverflowError)."""
from typing import Optional

INT64_LIMIT = 1 << 63


def _int(value: object, what: str, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be {expected}, got {value!r}")
    return value


def offset(value: object, what: str = "offset") -> int:
    """An offset: an int from 0 to 2**63 - 1."""
    expected = "an int from 0 to 2**63 - 1"
    number = _int(value, what, expected)
    if not 0 <= number < INT64_LIMIT:
        raise ValueError(f"{what} must be {expected}, got {value!r}")
    return number


def timestamp_ns(value: Optional[object]) -> int:
    """A record timestamp in ns since the epoch; -1 for None ("now")."""
    if value is None:
        return -1
    return offset(value, "timestamp_ns (ns since the epoch)")


def positive_int(value: object, what: str) -> int:
    number = _int(value, what, "a positive int")
    if number < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return number


def seconds(value: object, what: str, allow_none: bool = False) -> Optional[float]:
    """A duration in seconds: an int or float, zero or more (or None, if allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise TypeError(f"{what} must be a number of seconds{' or None' if allow_none else ''}, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be zero or more seconds, got {value!r}")
    return float(value)
