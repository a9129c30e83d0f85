"""Serializers and deserializers for producers' and consumers' keys and values.

kafka-python's shape: a serializer is a callable obj -> bytes, a deserializer a
callable bytes -> obj. Or a Serde, which has both (serialize, deserialize) and is
accepted by all four parameters (value_serializer, key_serializer on producers,
value_deserializer, key_deserializer on consumers). Ready-made:

    shmbus.serde.json      JSON (the standard library's; UTF-8, compact)
    shmbus.serde.msgpack   MessagePack, with msgspec (pip install 'shmbus[msgpack]')
    shmbus.serde.string    str <-> UTF-8 bytes

A None key or value (a tombstone) is never passed to a (de)serializer: it stays None.
"""
from ._serde import JsonSerde, MsgpackSerde, Serde, StringSerde, as_deserializer, as_serializer

json = JsonSerde()
msgpack = MsgpackSerde()
string = StringSerde()

__all__ = ["Serde", "JsonSerde", "MsgpackSerde", "StringSerde", "json", "msgpack", "string"]
# as_serializer and as_deserializer: for shmbus's producers and consumers.
_ = (as_serializer, as_deserializer)
