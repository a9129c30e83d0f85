"""Producer.reserve's context manager for the records the C fast path does not take
(a key, headers, a timestamp, a timeout, or no room at once): entering claims the
record's place, leaving publishes or aborts it."""
from types import TracebackType
from typing import TYPE_CHECKING, Optional, Type

from ._backend import ReservedView, Writer
from ._errors import ClaimRevoked, ShmbusError
from ._route import TopicRoute
from ._types import RecordMetadata

if TYPE_CHECKING:
    from ._producer import Producer

_new_tuple = tuple.__new__


class Reservation:
    """The context manager Producer.reserve returns: entering claims the record's place in
    the ring and gives its ReservedView; leaving publishes it (or aborts it if the block
    raised). A class rather than a generator: reserve() is a per-record call, and a
    generator-based context manager cost more than the claim itself."""

    __slots__ = ("producer", "route", "partition", "key", "header_blob", "timestamp_ns", "nbytes", "timeout",
                 "offset", "writer", "view")

    def __init__(self, producer: "Producer", route: TopicRoute, partition: int, key: Optional[bytes],
                 header_blob: bytes, timestamp_ns: int, nbytes: int, timeout: float):
        self.producer = producer
        self.route = route
        self.partition = partition
        self.key = key
        self.header_blob = header_blob
        self.timestamp_ns = timestamp_ns
        self.nbytes = nbytes
        self.timeout = timeout
        self.offset = -1
        self.writer: Optional[Writer] = None
        self.view: Optional[ReservedView] = None

    def __enter__(self) -> ReservedView:
        if self.view is not None:
            raise ShmbusError("a reservation is entered once: call reserve() again for the next record")
        self.view = self.producer._reserve(self)
        return self.view

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> None:
        view, writer = self.view, self.writer
        assert view is not None and writer is not None, "reservation exited without being entered"
        view._finish(None)
        if exc_type is not None:
            writer.abort()
            return
        try:
            writer.commit()
        except ClaimRevoked:
            raise self.producer._revoked(self.route, self.partition) from None
        view._finish(_new_tuple(RecordMetadata, (self.route.topic, self.partition, self.offset,
                                                 writer.timestamp_ns)))
