"""shmbus: Kafka's model for processes on one Linux host, over shared memory."""
from ._backend import ReservedView
from ._batch import RecordBatch
from ._bus import Bus, connect
from ._consumer import Consumer
from ._errors import (BufferFull, ClaimRevoked, Closed, CommitFailed, CorruptSegment, DeserializationError,
                      InvalidName, LeaseRevoked, MessageTooLarge, OffsetOutOfRange, OutOfSpace, ShmbusError, SupervisorUnavailable, Timeout,
                      TopicExists, TopicNotFound)
from ._linger import FutureRecordMetadata
from ._producer import Producer
from ._types import (GroupInfo, GroupMemberInfo, GroupPartition, Message, PartitionDescription, RecordMetadata,
                     TopicDescription, TopicInfo, TopicPartition)
from . import serde as serde  # shmbus.serde.json etc. without a second import

__version__ = "0.1.0"

__all__ = [
    "connect", "Bus", "Producer", "Consumer",
    "Message", "RecordMetadata", "TopicInfo", "TopicPartition",
    "ShmbusError", "TopicNotFound", "TopicExists", "InvalidName", "MessageTooLarge", "BufferFull",
    "Timeout", "SupervisorUnavailable", "OffsetOutOfRange", "Closed", "CommitFailed", "OutOfSpace",
    "CorruptSegment", "RecordBatch", "ClaimRevoked", "LeaseRevoked", "ReservedView",
    "GroupInfo", "GroupPartition", "FutureRecordMetadata",
    "GroupMemberInfo", "TopicDescription", "PartitionDescription", "DeserializationError",
]
