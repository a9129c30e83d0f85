"""Serializers and deserializers: the ready-made Serdes round-trip, callables work as in
kafka-python, and a deserializer that raises names the record and keeps the position."""
import pytest

import shmbus
from shmbus import TopicPartition as TP


def test_ready_made_serdes_round_trip(module_bus, topic):
    t = topic()
    bus = module_bus
    cases = [(shmbus.serde.json, {"a": [1, 2.5, "é"], "b": None}), (shmbus.serde.msgpack, {"a": [1, b"\x00"]}),
             (shmbus.serde.string, "héllo")]
    for serde, value in cases:
        with bus.producer(value_serializer=serde, key_serializer=shmbus.serde.string) as p:
            p.send(t, value, key="k")
            p.send(t, None, key=None)   # a tombstone stays None
        with bus.consumer(t, auto_offset_reset="latest") as c:
            c.seek(TP(t, 0), c.end_offsets([TP(t, 0)])[TP(t, 0)] - 2)
            with bus.consumer(t, value_deserializer=serde, key_deserializer=shmbus.serde.string) as typed:
                typed.assign([TP(t, 0)])
                typed.seek(TP(t, 0), c.position(TP(t, 0)))
                first, second = typed.poll_many(2, timeout=2)
                assert (first.key, first.value) == ("k", value), serde
                assert (second.key, second.value) == (None, None)


def test_plain_callables_and_what_a_serializer_must_return(module_bus, topic):
    t = topic()
    bus = module_bus
    with bus.producer(value_serializer=lambda n: n.to_bytes(4, "big")) as p:
        p.send(t, 7)
    with bus.consumer(t, auto_offset_reset="earliest", value_deserializer=lambda b: int.from_bytes(b, "big")) as c:
        assert c.poll(2).value == 7
    with bus.producer(value_serializer=lambda obj: str(obj)) as p:
        with pytest.raises(TypeError, match="value_serializer must return bytes, returned str"):
            p.send(t, 1)
    with pytest.raises(TypeError, match="value_serializer must be a callable"):
        bus.producer(value_serializer=42)
    with pytest.raises(TypeError, match="shmbus.serde.string serializes str, not int"):
        with bus.producer(value_serializer=shmbus.serde.string) as p:
            p.send(t, 5)


@pytest.mark.parametrize("how", ["poll", "iterate"])
def test_a_deserializer_error_names_the_record_and_keeps_the_position(module_bus, topic, how):
    t = topic()
    bus = module_bus
    with bus.producer() as p:
        for value in (b'{"n": 0}', b'{"n": 1}', b"not json", b'{"n": 3}'):
            p.send(t, value)
    with bus.consumer(t, auto_offset_reset="earliest", value_deserializer=shmbus.serde.json) as c:
        def next_record():
            return c.poll(2) if how == "poll" else next(iter(c))
        assert [next_record().value, next_record().value] == [{"n": 0}, {"n": 1}]
        for _ in range(2):   # raised again and again: the record is not skipped behind the user's back
            with pytest.raises(shmbus.DeserializationError) as err:
                next_record()
            e = err.value
            assert f"topic {t!r} partition 0 offset 2" in str(e) and "value_deserializer" in str(e)
            assert (e.topic_partition, e.offset, e.message.value) == (TP(t, 0), 2, b"not json")
            assert c.position(TP(t, 0)) == 2
        c.seek(e.topic_partition, e.offset + 1)   # the user decides to skip it
        m = next_record()
        assert (m.offset, m.value) == (3, {"n": 3})


def test_a_bad_key_in_a_batch_returns_the_records_before_it(module_bus, topic):
    t = topic()
    bus = module_bus
    with bus.producer() as p:
        p.send(t, b"a", key=b"ok")
        p.send(t, b"b", key=b"\xff\xfe")
        p.send(t, b"c", key=b"ok")
    with bus.consumer(t, auto_offset_reset="earliest", key_deserializer=shmbus.serde.string) as c:
        assert [m.value for m in c.poll_many(10, timeout=2)] == [b"a"]
        with pytest.raises(shmbus.DeserializationError, match="offset 1: the key_deserializer raised UnicodeDecodeError"):
            c.poll_many(10, timeout=2)
