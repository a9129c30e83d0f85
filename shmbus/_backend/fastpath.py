"""The per-record paths in CPython's C API (shmbus/_native/cpython/, fastpath.h says which
file holds what), bound here to the core's functions through cffi, so there is one copy
of the core.

ProducerBase and ConsumerBase are the C halves of Producer and Consumer: the common
sends and `for msg in consumer`; decode and decode_plain build Messages from a read;
ProducerBase.reserve's common case is a FastReservation, and ReservedView is the buffer
a reservation hands out. Measured on the 2-core test machine, a 64 B send went from
~860 to ~300 ns, iterating a record from ~560 to ~150 ns, and a 64 B reserve-and-publish
from ~11.7 us (generator context manager) to ~5.6 (a Python class) to ~1 us."""
from .._errors import ShmbusError
from .._native._core import ffi, lib
from .._native._fastpath import (ConsumerBase, ProducerBase, ReservedView, Route, bind, bind_linger, decode,
                                 decode_plain)
from .._types import Message, RecordMetadata


def _address(function: str) -> int:
    return int(ffi.cast("uintptr_t", ffi.addressof(lib, function)))


bind(_address("sb_append_now"), _address("sb_reserve_now"), _address("sb_commit"), _address("sb_abort"),
     RecordMetadata, Message, ShmbusError)

__all__ = ["ConsumerBase", "ProducerBase", "ReservedView", "Route", "bind_linger", "decode", "decode_plain"]
