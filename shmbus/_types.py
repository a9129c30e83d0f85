"""Typed records: immutable tuples with a docstring per field.

They are NamedTuples, not dataclasses, because a consumer builds one per
record: a tuple is built in one C call, a frozen dataclass in eight.
"""
from typing import Dict, NamedTuple, Optional, Tuple


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


class PartitionDescription(NamedTuple):
    """One partition of a topic, as describe_topic() sees it."""

    partition: int
    earliest_offset: int
    end_offset: int
    ring_bytes: int
    ring_used_bytes: int
    producers: int
    waiting_consumers: int
    segments: Optional[int] = None
    disk_bytes: Optional[int] = None
    archived_offset: Optional[int] = None
    archive_lag: Optional[int] = None
    unsynced_bytes: Optional[int] = None
    last_fsync_ns: Optional[int] = None
    archive_error: Optional[str] = None
    damage: Tuple[str, ...] = ()


class TopicDescription(NamedTuple):
    """A topic's configuration and the state of each of its partitions."""

    info: TopicInfo
    created_ns: int
    max_record_bytes: int
    partitions: Tuple[PartitionDescription, ...]


class GroupPartition(NamedTuple):
    """One partition a consumer group reads or has offsets for."""

    committed: Optional[int]
    end_offset: Optional[int]
    lag: Optional[int]
    member: Optional[str]
    pid: Optional[int] = None


class GroupMemberInfo(NamedTuple):
    """One live member of a consumer group."""

    member_id: str
    pid: int
    topics: Tuple[str, ...]
    assignment: Tuple[TopicPartition, ...]
    idle_ms: Optional[int]


class GroupInfo(NamedTuple):
    """A consumer group: its generation, live members and, per partition, where it is."""

    group: str
    generation: int
    members: Tuple[GroupMemberInfo, ...]
    partitions: Dict[TopicPartition, GroupPartition]
    state: str = ""
    strategy: Optional[str] = None
    sticky: Optional[bool] = None
    error: Optional[str] = None


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
    PartitionDescription: {
        "partition": "The partition number.",
        "earliest_offset": "The oldest offset still retained (ring or segment files).",
        "end_offset": "The offset the next record will get (Kafka's log end offset).",
        "ring_bytes": "The ring's data area, bytes.",
        "ring_used_bytes": "Bytes of records the ring holds now.",
        "producers": "Producer slots in use.",
        "waiting_consumers": "Consumers asleep on the ring now.",
        "segments": "Durable topics: segment files (else None).",
        "disk_bytes": "Durable topics: bytes of segment files.",
        "archived_offset": "Durable topics: the offset archiving has reached.",
        "archive_lag": "Durable topics: records in the ring not yet on disk.",
        "unsynced_bytes": "Durable topics: bytes written to disk but not yet fsynced.",
        "last_fsync_ns": "Durable topics: when the last fsync happened (ns since the epoch), or None.",
        "archive_error": "Durable topics: why archiving stopped, or None.",
        "damage": "Durable topics: what the supervisor found wrong in the log at start.",
    },
    TopicDescription: {
        "info": "The topic's TopicInfo.",
        "created_ns": "When it was created, ns since the epoch.",
        "max_record_bytes": "The largest record (key + headers + value) it takes: half a ring.",
        "partitions": "A PartitionDescription per partition, in order.",
    },
    GroupPartition: {
        "committed": "The group's committed offset (None: never committed).",
        "end_offset": "The partition's end offset (None: the topic is gone).",
        "lag": "end_offset - committed, or None.",
        "member": "The member id that owns the partition now, or None.",
        "pid": "That member's process id, or None.",
    },
    GroupMemberInfo: {
        "member_id": "Its id in the group.",
        "pid": "Its process id (in the supervisor's pid namespace).",
        "topics": "The topics it subscribed to.",
        "assignment": "The partitions it holds.",
        "idle_ms": "Milliseconds since its last poll, or None.",
    },
    GroupInfo: {
        "group": "The group id.",
        "generation": "Its generation: one more per rebalance.",
        "members": "Its live members (GroupMemberInfo).",
        "partitions": "{TopicPartition: GroupPartition}.",
        "state": "Stable, Rebalancing, Empty or Broken (as `shmbus groups` shows it).",
        "strategy": "The members' assignment strategy, or None without members.",
        "sticky": "Whether they assign stickily, or None without members.",
        "error": "Why the group is broken (its offsets file cannot be read), or None.",
    },
}
for _cls, _docs in _FIELD_DOCS.items():
    for _name, _doc in _docs.items():
        getattr(_cls, _name).__doc__ = _doc
