"""A producer's view of one topic (TopicRoute: its rings, a Writer per partition,
the sticky partition) and how a record's bytes and key reach the C core: bytes-like
objects as C buffers, keys through Kafka's murmur2 partitioner."""
from typing import Any, List, Optional

from . import _backend
from ._backend import CData, Ring, Route, Writer
from ._ring_table import RingTable

# How long one C call may sleep waiting for ring space before Python looks
# around (timeout, Ctrl-C, a dead producer holding the ring up).
WAIT_SLICE_NS = 50_000_000


def _not_bytes_like(obj: object, what: str) -> TypeError:
    return TypeError(f"{what} must be bytes-like (bytes, bytearray, memoryview) or None, "
                     f"not {type(obj).__name__}")


def as_buffer(obj: Any, what: str) -> CData:
    """A bytes-like object as a C buffer, without copying it -- unless it is not
    contiguous (a strided memoryview, a sliced array): then as a contiguous copy."""
    try:
        return _backend.c_buffer(obj)
    except TypeError:
        raise _not_bytes_like(obj, what) from None
    except BufferError:
        return _backend.c_buffer(as_bytes(obj, what))


def as_bytes(obj: Any, what: str) -> bytes:
    """A bytes-like object as bytes (a copy: for keys, which are small)."""
    try:
        return bytes(memoryview(obj))
    except TypeError:
        raise _not_bytes_like(obj, what) from None


def murmur2_partition(key: bytes, num_partitions: int) -> int:
    """Kafka's default partitioner for keyed records: toPositive(murmur2(key)) % n."""
    return (_backend.murmur2(key) & 0x7FFFFFFF) % num_partitions


class TopicRoute(Route):
    """A producer's view of one topic: its rings, a Writer (ring + producer slot) per
    partition, taken on first use, and the sticky partition for keyless records.
    The C half (Route: cpython/route.c) holds what ProducerBase.send reads per record --
    each writer's address, the sticky partition and its budget, the key cache."""

    __slots__ = ("table", "rings", "writers", "wait_ns", "max_record", "lingering")

    def __init__(self, topic: str, table: RingTable, rings: List[Ring], wait_ns: int = WAIT_SLICE_NS):
        super().__init__(topic, len(rings))
        self.table = table   # each writer holds its ring there
        self.rings = rings
        self.wait_ns = wait_ns
        self.max_record = min(ring.max_record for ring in rings)
        self.lingering: List[Any] = [None] * self.count   # a lingering producer's open batch per partition
        self.writers: List[Optional[Writer]] = [None] * self.count

    def writer(self, partition: int) -> Writer:
        writer = self.writers[partition]
        if writer is None:
            ring = self.rings[partition]
            self.table.hold(ring)
            writer = self.writers[partition] = Writer(ring, self.wait_ns)
            self.set_writer(partition, writer.address, writer, writer.view_keeper())
        return writer

    def stick_to(self, partition: int, budget: int) -> None:
        self.writer(partition)
        self.stick(partition, budget)

    def release(self) -> None:
        for partition, writer in enumerate(self.writers):
            if writer is not None:
                self.set_writer(partition, None)   # before its sb_writer is freed
                writer.release()
                self.table.release(writer.ring)
        self.writers = [None] * self.count
