"""Frames outside a ring (frame.c): checking and parsing segment files in place, and
finding the next intact frame after a damaged stretch."""
import re
from typing import Iterator, List, NamedTuple, Optional, Tuple

from .._errors import CorruptFrame
from .._native._core import ffi, lib
from .core import DESC_OFFSET, DESC_WORDS, FRAME_HEADER_BYTES, raise_for

_TYPE_AT = ffi.offsetof("sb_frame_header", "type")
_LENGTH_MASK = 0xFFFFFFFF
# The type field of a frame a segment file can hold (data, or an aborted claim), as its
# little-endian uint16: a cheap filter before the full check. Two bytes, so no match
# can hide another (the second byte is never a first one).
_FRAME_TYPE = re.compile(b"[%c%c]\x00" % (lib.SB_FRAME_DATA, lib.SB_FRAME_ABORTED))


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

    __slots__ = ("desc", "desc_buffer", "max_records", "_result")

    def __init__(self, max_records: int = 256):
        self.max_records = max_records
        self.desc = ffi.new("int64_t[]", max_records * DESC_WORDS)
        self.desc_buffer = ffi.buffer(self.desc)   # for decode() (fastpath.py)
        self._result = ffi.new("sb_parse_result *")

    def parse(self, chunk: bytes, start: int, expected_offset: int, skip_below: int, max_records: int,
              end: Optional[int] = None) -> Tuple[int, int, int]:
        """Parse whole frames of chunk[start:end]; the frame at start must carry
        expected_offset, and each frame the offset the one before leads to. Returns
        (records described, bytes consumed, offset after the last frame parsed, or
        expected_offset if none was). CorruptFrame, with .position in the chunk and
        .after_offset, at a frame that fails its check or carries another offset."""
        result = self._result
        result.next_offset = expected_offset
        n = lib.sb_parse(chunk, start, len(chunk) if end is None else end, skip_below,
                         min(max_records, self.max_records), self.desc, result)
        if n == lib.SB_CORRUPT:
            raise CorruptFrame(f"corrupt frame at byte {result.bad_position}",
                               position=result.bad_position, after_offset=result.next_offset - 1)
        if n < 0:
            raise_for(n, "segment chunk")
        return n, result.consumed, result.next_offset

    def words(self, n: int) -> List[int]:
        return ffi.unpack(self.desc, n * DESC_WORDS)

    def last_offset(self, n: int) -> int:
        """The offset of the last of the n records the last parse described."""
        return self.desc[(n - 1) * DESC_WORDS + DESC_OFFSET]


def frame_length(chunk: bytes, position: int = 0) -> int:
    """What the length word of a frame at position says (not checked)."""
    return int.from_bytes(chunk[position:position + 4], "little") & _LENGTH_MASK


def find_frame(chunk: bytes, start: int, min_offset: int,
               final: bool) -> Tuple[Optional[Tuple[int, FrameHeader]], int]:
    """Look for an intact frame at an 8-aligned position of chunk from start on (positions
    count from the chunk's start, which must be 8-aligned in its file) that carries an
    offset >= min_offset: a reader's resync after damage, whose length word may be garbage
    too. `final`: the chunk runs to the end of the file.

    Returns ((position, header) or None, where to go on). Unless final, a frame that
    starts in the chunk but runs past its end cannot be checked here: the search stops at
    it, to go on with a chunk from there that holds all of it (its length word says how
    much). A false match needs a CRC32C to pass on other bytes, about one in four billion
    candidates, and candidates are rare (the type field must read as data or aborted)."""
    base = ffi.from_buffer(chunk)
    length = len(chunk)
    for match in _FRAME_TYPE.finditer(chunk, start + _TYPE_AT):
        position = match.start() - _TYPE_AT
        if position % 8:
            continue
        if position + FRAME_HEADER_BYTES > length:
            if final:
                break
            return None, position
        size = lib.sb_frame_check(base + position, length - position)
        if size == lib.SB_EMPTY:
            if not final and frame_length(chunk, position):
                return None, position
            continue
        if size < 0:
            continue
        f = ffi.cast("sb_frame_header *", base + position)
        if f.type != lib.SB_FRAME_PADDING and f.offset >= min_offset:
            return (position, FrameHeader(f.offset, f.timestamp_ns, f.record_count, f.type)), position
    # Every position whose type field lies in the chunk was looked at; go on from the first
    # whose type field does not (-13: its two bytes start 12 bytes in).
    return None, max(start, (length - _TYPE_AT - 1 + 7) & ~7)
