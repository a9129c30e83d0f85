"""Record headers as they travel inside a frame: for each header, u16 name length,
UTF-8 name, i32 value length (-1: None), value bytes. Only records that carry
headers pay for this."""
import struct
from collections import abc
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

_NAME = struct.Struct("<H")
_VALUE = struct.Struct("<i")

# What send() takes: (name, value) pairs, or a mapping; a value of None is kept as None.
Headers = Union[Iterable[Tuple[str, Optional[bytes]]], Mapping[str, Optional[bytes]]]
# What a Message carries.
DecodedHeaders = Tuple[Tuple[str, Optional[bytes]], ...]


def encode_headers(headers: Headers) -> bytes:
    # collections.abc's Mapping: an isinstance against typing's alias costs ~0.5 us a record.
    pairs: Iterable[Any] = headers.items() if isinstance(headers, abc.Mapping) else headers
    parts = []
    for item in pairs:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise TypeError(f"headers must be (str, bytes) pairs, got {item!r}") from None
        if not isinstance(name, str):
            raise TypeError(f"header name must be a str, not {type(name).__name__}")
        encoded = name.encode()
        if len(encoded) > 0xFFFF:
            raise ValueError("header name longer than 65535 bytes")
        parts.append(_NAME.pack(len(encoded)))
        parts.append(encoded)
        if value is None:
            parts.append(_VALUE.pack(-1))
        else:
            try:
                value = bytes(memoryview(value))
            except TypeError:
                raise TypeError(f"header {name!r} value must be bytes-like or None, not "
                                f"{type(value).__name__}") from None
            parts.append(_VALUE.pack(len(value)))
            parts.append(value)
    return b"".join(parts)


def decode_headers(blob: bytes) -> DecodedHeaders:
    headers: list = []
    pos, end = 0, len(blob)
    while pos < end:
        (name_len,) = _NAME.unpack_from(blob, pos)
        pos += 2
        name = blob[pos:pos + name_len].decode()
        pos += name_len
        (value_len,) = _VALUE.unpack_from(blob, pos)
        pos += 4
        if value_len < 0:
            value = None
        else:
            value = blob[pos:pos + value_len]
            pos += value_len
        headers.append((name, value))
    return tuple(headers)
