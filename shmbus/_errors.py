"""The exception tree: one root, and a builtin parent wherever the meaning matches."""
from typing import Any, Optional, Tuple


class ShmbusError(Exception):
    """Root of every error shmbus raises on purpose."""


class TopicNotFound(ShmbusError, LookupError):
    """The topic does not exist on this bus."""


class TopicExists(ShmbusError):
    """A topic of that name already exists."""


class InvalidName(ShmbusError, ValueError):
    """A topic, group or bus name that Kafka's rule refuses: [A-Za-z0-9._-], 1-249 chars, not . or .."""


class MessageTooLarge(ShmbusError, ValueError):
    """The record can never fit the partition's ring (at most half of it)."""


class BufferFull(ShmbusError):
    """The ring stayed full of records that are not yet safe to overwrite until the timeout."""


class Timeout(ShmbusError, TimeoutError):
    """A blocking call ran out of time."""


class SupervisorUnavailable(ShmbusError, ConnectionError):
    """No supervisor answers for this bus (and none could be started)."""


class OffsetOutOfRange(ShmbusError):
    """The offset is not retained: before the earliest or after the end."""


class Closed(ShmbusError):
    """You closed this object; it cannot be used any more."""


class CommitFailed(ShmbusError):
    """The commit carried a stale group generation: the partitions moved to another member."""


class InvalidArgument(ShmbusError, ValueError):
    """An argument with a value shmbus cannot use (a ring too small, 0 partitions...)."""


class InvalidArgumentType(ShmbusError, TypeError):
    """An argument of the wrong type."""


class OutOfSpace(ShmbusError, OSError):
    """Shared memory (/dev/shm) or the disk has no room for what was asked."""


class ClaimRevoked(Timeout):
    """A send took longer than the supervisor's unblock timeout between reserving its
    place and publishing it (the process was stopped, traced or swapped out), and its
    place was revoked so its partition could go on: the record was not sent."""


class LeaseRevoked(Timeout):
    """A zero-copy batch (poll_batch(copy=False)) was held past its lease while a producer
    needed the space it viewed: its views may have been overwritten while they were used.
    Raised when it is released (explicitly, or by the next poll)."""


class InvalidFile(ShmbusError, ValueError):
    """A file of the bus that does not hold what it should (not JSON, not a topic's
    description...); the message names it."""


class CorruptSegment(ShmbusError):
    """Records on disk a consumer cannot read: a frame failed its checks (CRC, length,
    offset), or the log has a hole (a segment ends before the next one begins). Never
    handed out as records, and a consumer's position never moves past them by itself.

    Attributes (None when not known):
      topic_partition  the TopicPartition.
      offset           the first offset that cannot be read. `consumer.seek(e.topic_partition,
                       e.offset + 1)` steps over it (a record at a time).
      resume_offset    the offset of the next intact record after the damage: seek there to
                       step over all of it (None: none in the segment files).
      path, position   the segment file and the byte where the damage starts.
    """

    def __init__(self, message: str, topic_partition: Optional[Tuple[str, int]] = None,
                 offset: Optional[int] = None, resume_offset: Optional[int] = None,
                 path: Optional[str] = None, position: Optional[int] = None):
        super().__init__(message)
        self.topic_partition = topic_partition
        self.offset = offset
        self.resume_offset = resume_offset
        self.path = path
        self.position = position


class DeserializationError(ShmbusError, ValueError):
    """A consumer's value_deserializer or key_deserializer raised on a record. The
    consumer's position stays at that record (the next poll raises again); seek past it
    to skip it: `consumer.seek(e.topic_partition, e.offset + 1)`.

    Attributes: topic_partition, offset, and message (the record as bytes). The
    deserializer's own exception is __cause__."""

    def __init__(self, message: str, topic_partition: Tuple[str, int], offset: int, record: Any):
        super().__init__(message)
        self.topic_partition = topic_partition
        self.offset = offset
        self.message = record


# ---- private: raised inside shmbus, shown to users only as a message ----

class BadRing(ShmbusError):
    """A shared-memory object that is not a valid ring of this version."""


class BadControlPage(ShmbusError):
    """A shared-memory object that is not a control page of this version."""


class SupervisorRunning(ShmbusError):
    """Another supervisor already holds this bus's lock."""


class NotTrusted(ShmbusError, PermissionError):
    """A file, ring, directory or control-socket peer that is not the bus's user's (or
    lets in more than the bus does): refused, never used."""


class BenchmarkError(ShmbusError, RuntimeError):
    """A benchmark worker failed, or did not report within its time."""


class BridgeConfigError(ShmbusError, ValueError):
    """A Kafka bridge's configuration that cannot work: a topic map, an address, a Kafka
    property librdkafka refuses, a TOML file. Public as shmbus.bridge.BridgeConfigError."""


# ---- private: what the C core's return codes mean (raised by _backend.core.raise_for) ----
# Most are signals that the module calling the C boundary handles (wait, reap, go to
# disk, re-resolve); they derive from ShmbusError so that one that escapes by mistake
# is still a shmbus error with a message.

class RingFull(ShmbusError):
    """The write limit is reached: wait for space (archiving, or readers, move it)."""


class ClaimLockBusy(ShmbusError):
    """A ring's claim lock stayed held: check that its owner is alive."""


class SlotBusy(ShmbusError):
    """Another thread of this process is appending with the same producer slot."""


class RingDeleted(ShmbusError):
    """The ring's topic was deleted, or a restarted supervisor replaced the ring."""


class RingMoved(RingDeleted):
    """The ring was retired (a producer stalled in it): the partition goes on in a new
    ring at the next offset. Handled like a replaced ring: re-resolve the topic."""


class Lapped(ShmbusError):
    """A durable ring overwrote the cursor's position: those records are on disk."""


class NotReady(ShmbusError):
    """A frame before the position is still being written: try again."""


class OutOfRing(ShmbusError):
    """The offset is not in the ring (older than it holds, or beyond its end)."""


class CorruptFrame(ShmbusError):
    """A frame failed its checks (CRC, offset, length). `position`: where it starts in
    the buffer checked; `after_offset`: the offset of the last good record before it."""

    def __init__(self, message: str, position: Optional[int] = None, after_offset: Optional[int] = None):
        super().__init__(message)
        self.position = position
        self.after_offset = after_offset


# What the supervisor's replies name, back to the class the client raises: ours,
# and the builtins its argument checks raise.
ERRORS_BY_NAME = {
    cls.__name__: cls
    for cls in (ShmbusError, TopicNotFound, TopicExists, InvalidName, MessageTooLarge, BufferFull,
                Timeout, SupervisorUnavailable, OffsetOutOfRange, Closed, CommitFailed, OutOfSpace,
                CorruptSegment, InvalidArgument, InvalidArgumentType, NotTrusted, ValueError, TypeError)
}
