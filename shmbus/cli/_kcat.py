"""kcat's habits as shmbus consume and produce read them: -o offset specs, -f format
strings, -J's JSON envelope, and delimiters with escapes (-D '\\0', -K '\\t').

JSON output never guesses: a key, value or header that is valid UTF-8 is a JSON
string of that text; one that is not is an object {"base64": "..."}; a missing one is
null. So `jq` tells the three apart (`type`), and no text is ever mistaken for bytes.
"""
import base64
import json
import re
from typing import Callable, List, NamedTuple, Optional, Union

from .._types import Message
from ._plumbing import CliError


def json_bytes(data: Optional[bytes]) -> Union[None, str, dict]:
    """UTF-8 text as a string, other bytes as {"base64": ...}, None as null."""
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode()}


def kcat_json(m: Message) -> bytes:
    """kcat -J's envelope: topic, partition, offset, tstype, ts (ms), broker, headers
    (a flat [name, value, ...] list, as kcat prints them), key, payload."""
    headers: list = []
    for name, value in m.headers:
        headers += [name, json_bytes(value)]
    return json.dumps({
        "topic": m.topic, "partition": m.partition, "offset": m.offset, "tstype": "create",
        "ts": m.timestamp_ns // 1_000_000, "broker": -1, "headers": headers,
        "key": json_bytes(m.key), "payload": json_bytes(m.value),
    }, ensure_ascii=False).encode()


def shmbus_json(m: Message) -> bytes:
    """--json's envelope (shmbus's own names, the timestamp in ns)."""
    return json.dumps({
        "topic": m.topic, "partition": m.partition, "offset": m.offset, "timestamp_ns": m.timestamp_ns,
        "key": json_bytes(m.key), "value": json_bytes(m.value),
        "headers": [[name, json_bytes(value)] for name, value in m.headers],
    }, ensure_ascii=False).encode()


# ---- -f FORMAT ----

FORMAT_TOKENS = {
    "t": "topic", "p": "partition", "o": "offset", "k": "key", "K": "key length (-1: no key)",
    "s": "value", "S": "value length (-1: no value)", "T": "timestamp (ms)",
    "h": "headers (name=value,...)", "%": "a literal %",
}
_TOKEN = re.compile(r"%(.)|\\(.)", re.DOTALL)
_ESCAPES = {"n": b"\n", "t": b"\t", "r": b"\r", "0": b"\0", "\\": b"\\"}

Piece = Callable[[Message], bytes]


def compile_format(fmt: str, null: bytes = b"") -> Callable[[Message], bytes]:
    """-f FORMAT -> a function building one record's output. `null` is what a missing key
    or value prints as (-Z: NULL)."""
    pieces: List[Union[bytes, Piece]] = []
    pos = 0
    for match in _TOKEN.finditer(fmt):
        if match.start() > pos:
            pieces.append(fmt[pos:match.start()].encode())
        pos = match.end()
        token, escape = match.group(1), match.group(2)
        if escape is not None:
            if escape not in _ESCAPES:
                raise CliError(f"-f: unknown escape \\{escape} in {fmt!r} (known: \\n \\t \\r \\0 \\\\)")
            pieces.append(_ESCAPES[escape])
        elif token == "%":
            pieces.append(b"%")
        elif token in _PIECES:
            pieces.append(_PIECES[token](null))
        else:
            known = " ".join(f"%{t}" for t in FORMAT_TOKENS)
            raise CliError(f"-f: unknown token %{token} in {fmt!r} (known: {known} \\n \\t)")
    if pos < len(fmt):
        pieces.append(fmt[pos:].encode())
    merged: List[Union[bytes, Piece]] = []
    for piece in pieces:   # adjacent literals joined: fewer steps per record
        if isinstance(piece, bytes) and merged and isinstance(merged[-1], bytes):
            merged[-1] += piece
        else:
            merged.append(piece)
    return lambda m: b"".join(p if isinstance(p, bytes) else p(m) for p in merged)


def _headers_text(m: Message) -> bytes:
    return b",".join(name.encode() + b"=" + value for name, value in m.headers)


_PIECES = {
    "t": lambda null: lambda m: m.topic.encode(),
    "p": lambda null: lambda m: b"%d" % m.partition,
    "o": lambda null: lambda m: b"%d" % m.offset,
    "k": lambda null: lambda m: null if m.key is None else m.key,
    "K": lambda null: lambda m: b"-1" if m.key is None else b"%d" % len(m.key),
    "s": lambda null: lambda m: null if m.value is None else m.value,
    "S": lambda null: lambda m: b"-1" if m.value is None else b"%d" % len(m.value),
    "T": lambda null: lambda m: b"%d" % (m.timestamp_ns // 1_000_000),
    "h": lambda null: _headers_text,
}


def delimiter(text: str, flag: str) -> bytes:
    """A delimiter flag's value with kcat's escapes: '\\n', '\\t', '\\r', '\\0', '\\\\', '\\xHH'."""
    def replace(match: "re.Match[str]") -> str:
        escape = match.group(1)
        if escape.startswith("x"):
            return chr(int(escape[1:], 16))
        return _ESCAPES[escape].decode()
    try:
        decoded = re.sub(r"\\(x[0-9a-fA-F]{2}|[ntr0\\])", replace, text)
    except KeyError:
        raise CliError(f"{flag}: bad escape in {text!r}") from None
    data = decoded.encode("latin-1") if all(ord(c) < 256 for c in decoded) else decoded.encode()
    if not data:
        raise CliError(f"{flag}: the delimiter is empty")
    return data


# ---- -o OFFSET ----

class OffsetSpec(NamedTuple):
    """Where consume starts: kind is 'beginning', 'end', 'stored', 'offset' (value: N),
    'from_end' (value: N records before the end) or 'time' (value: ms since the epoch)."""
    kind: str
    value: int = 0


def parse_offset(text: str) -> OffsetSpec:
    """kcat's -o: beginning | end | stored | N | -N | s@MS."""
    word = text.strip()
    if word in ("beginning", "end", "stored"):
        return OffsetSpec(word)
    try:
        if word.startswith("s@"):
            return OffsetSpec("time", int(word[2:]))
        number = int(word)
    except ValueError:
        raise CliError(f"-o: not an offset: {text!r} (beginning, end, stored, N, -N "
                       f"or s@TIMESTAMP_MS)") from None
    return OffsetSpec("from_end", -number) if number < 0 else OffsetSpec("offset", number)
