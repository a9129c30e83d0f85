"""The per-record paths in CPython's C API (shmbus/_native/cpython/fastpath.c), bound
here to the core's sb_append_now through cffi, so there is one copy of the core.

ProducerBase and ConsumerBase are the C halves of Producer and Consumer: the common
sends and `for msg in consumer`; decode and decode_plain build Messages from a read;
ReservedView is the buffer Producer.reserve hands out. Measured on the 2-core test
machine, a 64 B send went from ~860 to ~300 ns and iterating a record from ~560 to
~150 ns (bench/README.md has the profile)."""
from .._native._core import ffi, lib
from .._native._fastpath import (ConsumerBase, ProducerBase, ReservedView, Route, bind, bind_linger, decode,
                                 decode_plain)
from .._types import Message, RecordMetadata

bind(int(ffi.cast("uintptr_t", ffi.addressof(lib, "sb_append_now"))), RecordMetadata, Message)

__all__ = ["ConsumerBase", "ProducerBase", "ReservedView", "Route", "bind_linger", "decode", "decode_plain"]
