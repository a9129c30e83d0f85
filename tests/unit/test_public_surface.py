"""The public names of ../shared/API.md, exactly, as trio checks its own: users and
outside tests are written against them. Everything else is private (_modules)."""
import inspect
import subprocess
import sys

import shmbus

API_NAMES = {
    "connect", "Bus", "Producer", "Consumer", "Message", "RecordMetadata", "TopicInfo",
    "TopicPartition", "ShmbusError", "TopicNotFound", "TopicExists", "InvalidName",
    "MessageTooLarge", "BufferFull", "Timeout", "SupervisorUnavailable", "OffsetOutOfRange",
    "Closed", "CommitFailed", "OutOfSpace", "CorruptSegment", "RecordBatch",
    "GroupInfo", "GroupPartition", "FutureRecordMetadata",
}
# Beyond API.md, documented in the README: the error a stalled producer's send raises, the
# one a zero-copy batch held past its lease raises, the buffer Producer.reserve hands out.
EXTRAS = {"ClaimRevoked", "LeaseRevoked", "ReservedView",
          # describe_group's members, describe_topic's records, a deserializer's failure
          "GroupMemberInfo", "TopicDescription", "PartitionDescription", "DeserializationError"}
# Public subpackages: reached as shmbus.<name>, never re-exported at the top.
SUBPACKAGES = {"cli", "serde", "aio"}


def test_all_is_exactly_the_api():
    assert set(shmbus.__all__) == API_NAMES | EXTRAS
    assert len(shmbus.__all__) == len(set(shmbus.__all__)), "a name listed twice"
    for name in shmbus.__all__:
        assert hasattr(shmbus, name), name


def test_nothing_else_public_at_the_top():
    """A fresh interpreter, so other tests' imports of subpackages don't count."""
    code = "import shmbus; print(' '.join(n for n in dir(shmbus) if not n.startswith('_')))"
    names = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               check=True).stdout.split())
    assert names - SUBPACKAGES == API_NAMES | EXTRAS


def test_public_objects_say_they_are_shmbus_s():
    for name in shmbus.__all__:
        obj = getattr(shmbus, name)
        assert obj.__module__.startswith("shmbus"), (name, obj.__module__)
        assert obj.__doc__, f"{name} has no docstring"


def test_errors_have_one_root_and_the_matching_builtins():
    parents = {
        "TopicNotFound": LookupError, "InvalidName": ValueError, "MessageTooLarge": ValueError,
        "Timeout": TimeoutError, "SupervisorUnavailable": ConnectionError,
    }
    for name in API_NAMES:
        obj = getattr(shmbus, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert issubclass(obj, shmbus.ShmbusError), name
            if name in parents:
                assert issubclass(obj, parents[name]), name


def test_records_have_the_api_fields():
    assert shmbus.Message._fields == ("topic", "partition", "offset", "timestamp_ns", "key", "value", "headers")
    assert shmbus.RecordMetadata._fields == ("topic", "partition", "offset", "timestamp_ns")
    assert shmbus.TopicInfo._fields[:6] == ("name", "partitions", "ring_bytes", "durable",
                                            "retention_bytes", "retention_ms")
    assert shmbus.TopicPartition("imu", 0) == ("imu", 0)


def test_methods_and_their_parameters():
    def params(fn):
        return list(inspect.signature(fn).parameters)
    assert params(shmbus.connect)[:3] == ["name", "data_dir", "autostart"]
    assert params(shmbus.Bus.create_topic)[1:7] == ["name", "partitions", "ring_bytes", "durable",
                                                    "retention_bytes", "retention_ms"]
    for name in ("topics", "delete_topic", "close", "producer", "consumer", "__enter__", "__exit__"):
        assert callable(getattr(shmbus.Bus, name)), name
    assert params(shmbus.Producer.send)[1:8] == ["topic", "value", "key", "headers", "partition",
                                                 "timestamp_ns", "timeout"]
    assert params(shmbus.Producer.send_many)[1:5] == ["topic", "values", "key", "partition"]
    assert params(shmbus.Producer.flush)[1:] == ["timeout"]
    assert params(shmbus.Consumer.poll)[1:] == ["timeout"]
    assert params(shmbus.Consumer.poll_many)[1:] == ["max_records", "timeout"]
    consumer_init = params(shmbus.Consumer.__init__)
    assert {"group", "auto_offset_reset"} <= set(consumer_init)
    for name in ("commit", "committed", "seek", "seek_to_beginning", "seek_to_end", "position",
                 "assignment", "subscribe", "__iter__", "__next__", "close"):
        assert callable(getattr(shmbus.Consumer, name)), name
