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
import struct
import time
import zlib
from typing import IO, Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

from ._errors import ShmbusError

MESSAGE_ENCODING = "msgpack"
PROFILE = ""   # no MCAP profile: the records are shmbus's own, not ROS messages
MCAP_MISSING = ("shmbus record and replay need the mcap and msgpack packages: "
                "pip install 'shmbus[mcap]'")
COMPRESSIONS = ("zstd", "lz4", "none")


def _require() -> Tuple[Any, Any]:
    try:
        import mcap.records
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


# One MCAP Message record's fixed part, as mcap.records.Message.write lays it out:
# opcode, record length, channel id, sequence, log time, publish time (then the data).
_MESSAGE_HEAD = struct.Struct("<BQHIQQ")
_MESSAGE_OPCODE = 0x05
_MESSAGE_FIXED = 2 + 4 + 8 + 8
MAGIC = b"\x89MCAP0\r\n"


class RecordWriter:
    """Writes shmbus records into one MCAP file; finish() (or the with block) completes it.

    Every record but the messages is written by the mcap package's own record classes
    (Header, Channel, Metadata, Chunk, MessageIndex, ChunkIndex, Statistics, the summary
    and Footer, laid out as its Writer lays them out). The messages inside a chunk are
    packed here, byte for byte what mcap.records.Message.write makes (a test checks it):
    mcap's Writer.add_message builds a dataclass and makes seven writes per message,
    which capped the recorder at ~75k records/s on this machine; packing them with one
    struct call per message raises that to ~250k (bench/record.py)."""

    def __init__(self, stream: IO[bytes], compression: str = "zstd", flush_interval: float = 1.0,
                 chunk_size: int = 1 << 20):
        _, msgpack = _require()
        from mcap.records import Header
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self._compress = _compressor(compression)
        self._compression = "" if compression == "none" else compression
        self._stream = stream
        self._position = 0
        self._packb = msgpack.Packer(use_bin_type=True).pack
        self._channels: Dict[str, int] = {}
        self._channel_records: List[Any] = []
        self._metadata_indexes: List[Any] = []
        self._chunk_indexes: List[Any] = []
        self._chunk = bytearray()
        self._chunk_index: Dict[int, List[Tuple[int, int]]] = {}
        self._chunk_start: Optional[int] = None
        self._chunk_end = 0
        self._chunk_size = chunk_size
        self._message_counts: Dict[int, int] = {}
        self._first_ns: Optional[int] = None   # of the whole file, from the chunks
        self._last_ns = 0
        self.flush_interval = flush_interval
        self._last_flush = time.monotonic()
        self._unflushed = False
        self.count = 0
        self.payload_bytes = 0
        self._finished = False
        from . import __version__
        self._emit(MAGIC)
        self._emit_record(Header(profile=PROFILE, library=f"shmbus {__version__}"))

    # ---- the data section ----

    def _emit(self, data: bytes) -> int:
        """Write data; returns the file offset it starts at."""
        at = self._position
        self._stream.write(data)
        self._position += len(data)
        return at

    def _emit_record(self, record: Any) -> Tuple[int, int]:
        """Write one mcap record object; (offset, length)."""
        from mcap.data_stream import RecordBuilder
        builder = RecordBuilder()
        record.write(builder)
        data = builder.end()
        return self._emit(data), len(data)

    def describe_source(self, bus: str, data_dir: str, topics: List[str]) -> None:
        from mcap.records import Metadata, MetadataIndex
        self._finish_chunk()
        offset, length = self._emit_record(Metadata(name="shmbus", metadata={
            "bus": bus, "data_dir": data_dir, "topics": ",".join(topics), "recorded_at_ns": str(time.time_ns())}))
        self._metadata_indexes.append(MetadataIndex(offset=offset, length=length, name="shmbus"))

    def add_topic(self, topic: str, partitions: int, durable: bool) -> int:
        from mcap.records import Channel
        self._finish_chunk()
        channel = Channel(id=len(self._channel_records) + 1, topic=topic, message_encoding=MESSAGE_ENCODING,
                          schema_id=0, metadata={"shmbus.partitions": str(partitions),
                                                 "shmbus.durable": str(durable).lower()})
        self._emit_record(channel)
        self._channel_records.append(channel)
        self._channels[topic] = channel.id
        self._message_counts[channel.id] = 0
        return channel.id

    def write(self, messages: List[Any]) -> None:
        """A batch of shmbus Messages (their topics added first)."""
        counts = self._message_counts
        channels = self._channels
        pack = self._packb
        head = _MESSAGE_HEAD.pack
        limit = self._chunk_size
        chunk, index = self._chunk, self._chunk_index
        low, high = self._chunk_start, self._chunk_end
        size = 0
        for m in messages:
            data = pack({"key": m.key, "value": m.value, "partition": m.partition, "offset": m.offset,
                         "headers": m.headers})
            channel = channels[m.topic]
            t = m.timestamp_ns
            if low is None or t < low:
                low = t
            if t > high:
                high = t
            at = len(chunk)
            try:
                index[channel].append((t, at))
            except KeyError:
                index[channel] = [(t, at)]
            chunk += head(_MESSAGE_OPCODE, _MESSAGE_FIXED + len(data), channel, m.offset & 0xFFFFFFFF, t, t)
            chunk += data
            counts[channel] += 1
            size += len(data)
            if len(chunk) >= limit:
                self._chunk_start, self._chunk_end = low, high
                self._finish_chunk()
                chunk, index = self._chunk, self._chunk_index
                low, high = None, 0
        self._chunk_start, self._chunk_end = low, high
        self.count += len(messages)
        self.payload_bytes += size
        self._unflushed = True
        self.flush_if_due()

    def _finish_chunk(self) -> None:
        """The chunk in progress, its message indexes and its chunk index (kept for the summary)."""
        if not self._chunk:
            return
        from mcap.records import Chunk, ChunkIndex, MessageIndex
        assert self._chunk_start is not None
        self._first_ns = self._chunk_start if self._first_ns is None else min(self._first_ns, self._chunk_start)
        self._last_ns = max(self._last_ns, self._chunk_end)
        raw = bytes(self._chunk)
        compressed = self._compress(raw)
        chunk = Chunk(compression=self._compression, data=compressed, message_start_time=self._chunk_start,
                      message_end_time=self._chunk_end, uncompressed_crc=zlib.crc32(raw),
                      uncompressed_size=len(raw))
        chunk_start, chunk_length = self._emit_record(chunk)
        index_start = self._position
        offsets = {}
        for channel, entries in self._chunk_index.items():
            offsets[channel], _ = self._emit_record(MessageIndex(channel_id=channel, records=entries))
        self._chunk_indexes.append(ChunkIndex(
            message_start_time=self._chunk_start, message_end_time=self._chunk_end,
            chunk_start_offset=chunk_start, chunk_length=chunk_length, message_index_offsets=offsets,
            message_index_length=self._position - index_start, compression=self._compression,
            compressed_size=len(compressed), uncompressed_size=len(raw)))
        self._chunk = bytearray()
        self._chunk_index = {}
        self._chunk_start = None
        self._chunk_end = 0

    def flush_if_due(self) -> None:
        """Flush when something is unflushed and flush_interval has passed: called after
        every poll, empty or not, so a quiet topic's last records reach the file too."""
        if self._unflushed and time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Finish the chunk in progress and push it to the file: from here on it survives
        the recorder being killed."""
        self._finish_chunk()
        self._stream.flush()
        self._last_flush = time.monotonic()
        self._unflushed = False

    # ---- the summary ----

    def finish(self) -> None:
        """DataEnd, the summary (channels, statistics, chunk and metadata indexes, their
        offsets) and the footer, as mcap's Writer.finish writes them."""
        if self._finished:
            return
        self._finished = True
        from mcap.data_stream import RecordBuilder
        from mcap.opcode import Opcode
        from mcap.records import DataEnd, Footer, Statistics, SummaryOffset
        self._finish_chunk()
        self._emit_record(DataEnd(data_section_crc=0))
        summary_start = self._position
        builder = RecordBuilder()
        groups = []

        def group(opcode: int, records: List[Any]) -> None:
            start = builder.count
            for record in records:
                record.write(builder)
            groups.append(SummaryOffset(group_opcode=opcode, group_start=summary_start + start,
                                        group_length=builder.count - start))

        group(Opcode.CHANNEL, self._channel_records)
        group(Opcode.STATISTICS, [Statistics(
            attachment_count=0, channel_count=len(self._channel_records),
            channel_message_counts=dict(self._message_counts), chunk_count=len(self._chunk_indexes),
            message_count=self.count, message_end_time=self._last_ns, message_start_time=self._first_ns or 0,
            metadata_count=len(self._metadata_indexes), schema_count=0)])
        group(Opcode.CHUNK_INDEX, self._chunk_indexes)
        group(Opcode.METADATA_INDEX, self._metadata_indexes)
        summary_offset_start = summary_start + builder.count
        for offset in groups:
            offset.write(builder)
        summary = builder.end()
        crc = zlib.crc32(summary)
        crc = zlib.crc32(struct.pack("<BQQQ", Opcode.FOOTER, 8 + 8 + 4, summary_start, summary_offset_start), crc)
        self._emit(summary)
        self._emit_record(Footer(summary_start=summary_start, summary_offset_start=summary_offset_start,
                                 summary_crc=crc))
        self._emit(MAGIC)
        self._stream.flush()

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()


def _compressor(compression: str) -> Callable[[bytes], bytes]:
    if compression == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=1).compress   # level 3 took twice as long per chunk, for a worse ratio on records
    if compression == "lz4":
        import lz4.frame
        return lz4.frame.compress
    return lambda data: data


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
