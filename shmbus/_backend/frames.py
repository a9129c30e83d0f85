"""Frames outside a ring (frame.c): checking and parsing segment files in place."""
from typing import Iterator, List, NamedTuple, Tuple

from .._errors import CorruptFrame
from .._native._core import ffi, lib
from .core import DESC_WORDS, raise_for


class FrameHeader(NamedTuple):
    """The fields of a frame header a log scan needs."""

    offset: int
    timestamp_ns: int
    record_count: int
    type: int


def walk_frames(chunk: bytes) -> Iterator[Tuple[int, int, FrameHeader]]:
    """(position, aligned size, header) of each whole, CRC-checked frame at the start of
    chunk, stopping at the first incomplete one; CorruptFrame (with .position) at a bad one."""
    base = ffi.from_buffer(chunk)
    position, length = 0, len(chunk)
    while position < length:
        size = lib.sb_frame_check(base + position, length - position)
        if size == lib.SB_EMPTY:
            return
        if size < 0:
            raise CorruptFrame(f"corrupt frame at byte {position}", position=position)
        f = ffi.cast("sb_frame_header *", base + position)
        yield position, size, FrameHeader(f.offset, f.timestamp_ns, f.record_count, f.type)
        position += size


class FrameParser:
    """Describes the records of a chunk of a segment file in place (sb_parse): every frame
    CRC-checked, records before skip_below skipped, descriptors like a ring read's."""

    __slots__ = ("desc", "max_records", "_result")

    def __init__(self, max_records: int = 256):
        self.max_records = max_records
        self.desc = ffi.new("int64_t[]", max_records * DESC_WORDS)
        self._result = ffi.new("sb_parse_result *")

    def parse(self, chunk: bytes, start: int, skip_below: int, max_records: int) -> Tuple[int, int, int]:
        """Parse whole frames of chunk from start; returns (records described, bytes
        consumed, offset after the last frame parsed, or skip_below if none was).
        CorruptFrame, with .position in the chunk and .after_offset, at a bad frame."""
        result = self._result
        result.next_offset = skip_below
        n = lib.sb_parse(chunk, start, len(chunk), skip_below, min(max_records, self.max_records),
                         self.desc, result)
        if n == lib.SB_CORRUPT:
            raise CorruptFrame(f"corrupt frame at byte {result.bad_position}",
                               position=result.bad_position, after_offset=result.next_offset - 1)
        if n < 0:
            raise_for(n, "segment chunk")
        return n, result.consumed, result.next_offset

    def words(self, n: int) -> List[int]:
        return ffi.unpack(self.desc, n * DESC_WORDS)
