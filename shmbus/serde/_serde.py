"""The Serde classes, and how producers and consumers take what they are given."""
import json as _json
from typing import Any, Callable, Optional, Protocol, Union, runtime_checkable

Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]


@runtime_checkable
class Serde(Protocol):
    """Both directions of one encoding."""

    def serialize(self, obj: Any) -> bytes: ...

    def deserialize(self, data: bytes) -> Any: ...


class JsonSerde:
    """JSON: compact separators, UTF-8, non-ASCII kept as is."""

    def serialize(self, obj: Any) -> bytes:
        return _json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def deserialize(self, data: bytes) -> Any:
        return _json.loads(data)

    def __repr__(self) -> str:
        return "shmbus.serde.json"


class MsgpackSerde:
    """MessagePack through msgspec (an extra: pip install 'shmbus[msgpack]'), imported on
    first use so that shmbus does not need it."""

    def __init__(self) -> None:
        self._encoder: Any = None
        self._decoder: Any = None

    def _load(self) -> None:
        try:
            import msgspec
        except ImportError:
            raise ImportError("shmbus.serde.msgpack needs msgspec: pip install 'shmbus[msgpack]'") from None
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder()

    def serialize(self, obj: Any) -> bytes:
        if self._encoder is None:
            self._load()
        encoded: bytes = self._encoder.encode(obj)
        return encoded

    def deserialize(self, data: bytes) -> Any:
        if self._decoder is None:
            self._load()
        return self._decoder.decode(data)

    def __repr__(self) -> str:
        return "shmbus.serde.msgpack"


class StringSerde:
    """str <-> bytes in an encoding (UTF-8 by default)."""

    def __init__(self, encoding: str = "utf-8"):
        self.encoding = encoding

    def serialize(self, obj: Any) -> bytes:
        if not isinstance(obj, str):
            raise TypeError(f"shmbus.serde.string serializes str, not {type(obj).__name__}")
        return obj.encode(self.encoding)

    def deserialize(self, data: bytes) -> Any:
        return bytes(data).decode(self.encoding)

    def __repr__(self) -> str:
        return "shmbus.serde.string"


def as_serializer(given: Union[None, Serde, Serializer], what: str) -> Optional[Serializer]:
    """A producer's value_serializer / key_serializer as a callable (None: bytes as given)."""
    if given is None:
        return None
    if isinstance(given, Serde):
        return given.serialize
    if callable(given):
        return given
    raise TypeError(f"{what} must be a callable obj -> bytes or a Serde (shmbus.serde.json, ...), not {given!r}")


def as_deserializer(given: Union[None, Serde, Deserializer], what: str) -> Optional[Deserializer]:
    """A consumer's value_deserializer / key_deserializer as a callable (None: bytes)."""
    if given is None:
        return None
    if isinstance(given, Serde):
        return given.deserialize
    if callable(given):
        return given
    raise TypeError(f"{what} must be a callable bytes -> obj or a Serde (shmbus.serde.json, ...), not {given!r}")
