"""shmbus records in an MCAP file: how `shmbus record` writes them and `shmbus replay`
reads them back.

MCAP (the container Foxglove, ROS 2 and eCAL tools read) has one channel per shmbus
topic. A record is one MCAP message whose log time and publish time are the record's
timestamp (ns since the epoch) and whose sequence is its offset (modulo 2**32, the
field's width); its data is a MessagePack map (message encoding "msgpack", a
well-known MCAP encoding, schemaless), so any language reads it:

    {"key": bytes | nil, "value": bytes | nil, "partition": int, "offset": int,
     "headers": [[name (str), value (bytes)], ...]}

The channel's metadata says what the topic was (shmbus.partitions, shmbus.durable),
and a metadata record named "shmbus" says which bus the file was recorded from.

Writing is chunked (zstd by default) and the file is flushed at least every
flush_interval seconds, so a recorder killed outright (SIGKILL, power loss of the
process) leaves every chunk written until its last flush readable by MCAP's own
stream reader (`mcap.stream_reader.StreamReader`, or the Go CLI's `mcap recover`,
which rewrites such a file whole); the file just lacks its summary and footer.
read_records() reads both kinds: a finished file through its index, an unfinished one
as a stream up to where it breaks off.
"""
import io
import time
from typing import IO, Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from ._errors import ShmbusError

MESSAGE_ENCODING = "msgpack"
PROFILE = ""   # no MCAP profile: the records are shmbus's own, not ROS messages
MCAP_MISSING = ("shmbus record and replay need the mcap and msgpack packages: "
                "pip install 'shmbus[mcap]'")
COMPRESSIONS = ("zstd", "lz4", "none")


def _require() -> Tuple[Any, Any]:
    try:
        import mcap.writer
        import msgpack
    except ImportError:
        raise ShmbusError(MCAP_MISSING) from None
    return mcap, msgpack


class Recorded(NamedTuple):
    """One record read back from a file."""

    topic: str
    partition: int
    offset: int
    timestamp_ns: int
    key: Optional[bytes]
    value: Optional[bytes]
    headers: Tuple[Tuple[str, bytes], ...]


class RecordWriter:
    """Writes shmbus records into one MCAP file; finish() (or the with block) completes it."""

    def __init__(self, stream: IO[bytes], compression: str = "zstd", flush_interval: float = 1.0,
                 chunk_size: int = 1 << 20):
        mcap, msgpack = _require()
        from mcap.writer import CompressionType, Writer
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        self._stream = stream
        self._writer = Writer(stream, chunk_size=chunk_size, compression=kind[compression])
        self._packb = msgpack.Packer(use_bin_type=True).pack
        self._channels: Dict[str, int] = {}
        self.flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self.count = 0
        self.payload_bytes = 0
        self._finished = False
        self._unflushed = False
        from . import __version__
        self._writer.start(profile=PROFILE, library=f"shmbus {__version__}")

    def describe_source(self, bus: str, data_dir: str, topics: List[str]) -> None:
        self._writer.add_metadata("shmbus", {"bus": bus, "data_dir": data_dir, "topics": ",".join(topics),
                                             "recorded_at_ns": str(time.time_ns())})

    def add_topic(self, topic: str, partitions: int, durable: bool) -> int:
        channel = self._writer.register_channel(
            topic=topic, message_encoding=MESSAGE_ENCODING, schema_id=0,
            metadata={"shmbus.partitions": str(partitions), "shmbus.durable": str(durable).lower()})
        self._channels[topic] = channel
        return channel

    def write(self, messages: List[Any]) -> None:
        """A batch of shmbus Messages (their topics added first)."""
        add = self._writer.add_message
        pack = self._packb
        channels = self._channels
        size = 0
        for m in messages:
            data = pack({"key": m.key, "value": m.value, "partition": m.partition, "offset": m.offset,
                         "headers": m.headers})
            add(channels[m.topic], log_time=m.timestamp_ns, data=data, publish_time=m.timestamp_ns,
                sequence=m.offset & 0xFFFFFFFF)
            size += len(data)
        self.count += len(messages)
        self.payload_bytes += size
        self._unflushed = True
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush when something is unflushed and flush_interval has passed: called after
        every poll, empty or not, so a quiet topic's last records reach the file too."""
        if self._unflushed and time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Finish the chunk in progress and push it to the file: from here on it survives
        the recorder being killed."""
        self._writer.flush()
        self._last_flush = time.monotonic()
        self._unflushed = False

    def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._writer.finish()
            self._stream.flush()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


class FileContents(NamedTuple):
    """What read_records found besides the records."""

    topics: Dict[str, int]      # topic -> partitions it had when recorded
    finished: bool              # False: a recorder killed before it finished the file


def open_file(stream: IO[bytes]) -> Tuple[FileContents, Iterator[Recorded]]:
    """The topics in a file and an iterator of its records in log-time order (a finished
    file) or in file order up to where it breaks off (an unfinished one)."""
    _, msgpack = _require()
    from mcap.reader import make_reader
    from mcap.exceptions import McapError
    reader = make_reader(stream)
    try:
        summary = reader.get_summary()
    except (McapError, EOFError, ValueError, OSError, AssertionError):
        summary = None
    if summary is not None:
        topics = {c.topic: _partitions(c.metadata) for c in summary.channels.values()}
        return FileContents(topics, True), _decode(msgpack, reader.iter_messages(log_time_order=True))
    stream.seek(0, io.SEEK_SET)
    topics = _scan_channels(stream)
    stream.seek(0, io.SEEK_SET)
    return FileContents(topics, False), _decode(msgpack, _stream_messages(stream))


def _partitions(metadata: Dict[str, str]) -> int:
    try:
        return max(1, int(metadata.get("shmbus.partitions", "1")))
    except ValueError:
        return 1


def _scan_channels(stream: IO[bytes]) -> Dict[str, int]:
    topics = {}
    for channel, _ in _stream_records(stream, channels_only=True):
        topics[channel.topic] = _partitions(channel.metadata)
    return topics


def _stream_records(stream: IO[bytes], channels_only: bool = False) -> Iterator[Tuple[Any, Any]]:
    """(channel, message) of an unfinished file read as a stream, until it breaks off:
    a record cut short by the kill ends the iteration, not the replay."""
    from mcap.records import Channel, Message
    from mcap.stream_reader import StreamReader
    channels: Dict[int, Any] = {}
    records = StreamReader(stream, emit_chunks=False).records
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception:   # the torn end of a killed recorder's file (EndOfFile, a short chunk)
            return
        if isinstance(record, Channel):
            channels[record.id] = record
            if channels_only:
                yield record, None
        elif isinstance(record, Message) and not channels_only:
            yield channels[record.channel_id], record


def _stream_messages(stream: IO[bytes]) -> Iterator[Tuple[Any, Any, Any]]:
    for channel, message in _stream_records(stream):
        yield None, channel, message


def _decode(msgpack: Any, messages: Iterator[Tuple[Any, Any, Any]]) -> Iterator[Recorded]:
    unpackb = msgpack.unpackb
    for _, channel, message in messages:
        if channel.message_encoding != MESSAGE_ENCODING:
            raise ShmbusError(f"channel {channel.topic!r} holds {channel.message_encoding!r} messages, "
                              f"not shmbus records: this file was not written by shmbus record")
        body = unpackb(message.data, raw=False)
        yield Recorded(channel.topic, body["partition"], body["offset"], message.log_time, body["key"],
                       body["value"], tuple((name, value) for name, value in body["headers"]))
