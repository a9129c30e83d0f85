"""The exception tree: one root, and a builtin parent wherever the meaning matches."""


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


class CorruptSegment(ShmbusError):
    """A frame on disk failed its CRC or length checks: the file and offset are named."""


# ---- private: raised inside shmbus, shown to users only as a message ----

class BadRing(ShmbusError):
    """A shared-memory object that is not a valid ring of this version."""


class BadControlPage(ShmbusError):
    """A shared-memory object that is not a control page of this version."""


class SupervisorRunning(ShmbusError):
    """Another supervisor already holds this bus's lock."""


class BenchmarkError(ShmbusError, RuntimeError):
    """A benchmark worker failed, or did not report within its time."""


# What the supervisor's replies name, back to the class the client raises: ours,
# and the builtins its argument checks raise.
ERRORS_BY_NAME = {
    cls.__name__: cls
    for cls in (ShmbusError, TopicNotFound, TopicExists, InvalidName, MessageTooLarge, BufferFull,
                Timeout, SupervisorUnavailable, OffsetOutOfRange, Closed, CommitFailed, OutOfSpace,
                CorruptSegment, InvalidArgument, InvalidArgumentType, ValueError, TypeError)
}
