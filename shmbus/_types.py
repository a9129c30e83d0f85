"""Typed records: immutable tuples with a docstring per field.

They are NamedTuples, not dataclasses, because a consumer builds one per
record: a tuple is built in one C call, a frozen dataclass in eight.
"""
from typing import NamedTuple, Optional, Tuple


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


class RecordMetadata(NamedTuple):
    """Where a sent record landed."""

    topic: str
    partition: int
    offset: int
    timestamp_ns: int


class Message(NamedTuple):
    """One record as a consumer receives it."""

    topic: str
    partition: int
    offset: int
    timestamp_ns: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Tuple[Tuple[str, bytes], ...]


class TopicInfo(NamedTuple):
    """A topic's configuration, as the supervisor keeps it."""

    name: str
    partitions: int
    ring_bytes: int
    durable: bool
    retention_bytes: Optional[int]
    retention_ms: Optional[int]
    segment_bytes: int = 128 << 20


_FIELD_DOCS = {
    TopicPartition: {
        "topic": "The topic's name.",
        "partition": "The partition number, from 0.",
    },
    RecordMetadata: {
        "topic": "The topic the record was sent to.",
        "partition": "The partition it went to.",
        "offset": "Its offset in that partition: consecutive from 0, never reused.",
        "timestamp_ns": "Its timestamp, nanoseconds since the epoch (the producer's clock unless given).",
    },
    Message: {
        "topic": "The topic the record came from.",
        "partition": "Its partition.",
        "offset": "Its offset in that partition; commit offset + 1 to mark it consumed.",
        "timestamp_ns": "Its timestamp, nanoseconds since the epoch.",
        "key": "The key as bytes, or None.",
        "value": "The value as bytes, or None (a tombstone).",
        "headers": "A tuple of (name, value) pairs, in the order they were sent.",
    },
    TopicInfo: {
        "name": "The topic's name.",
        "partitions": "How many partitions it has.",
        "ring_bytes": "Size of each partition's shared-memory data area, in bytes.",
        "durable": "True: archived to segment files on disk. False: memory only, oldest overwritten.",
        "retention_bytes": "Per partition, delete the oldest closed segments beyond this size (None: keep).",
        "retention_ms": "Delete closed segments whose newest record is older than this (None: keep).",
        "segment_bytes": "Durable topics: a segment file is closed and a new one started at this size.",
    },
}
for _cls, _docs in _FIELD_DOCS.items():
    for _name, _doc in _docs.items():
        getattr(_cls, _name).__doc__ = _doc
