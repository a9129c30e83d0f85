"""The on-disk log of one partition: segment files named by their base offset,
`<base:020d>.log`, in the same frame format as the ring, each with a sparse
`.index` (offset -> file position) and `.timeindex` (max timestamp so far ->
offset) written every INDEX_INTERVAL bytes.

The supervisor's archiver appends (SegmentWriter); consumers that fell out of
the ring read (SegmentReader). Both see only whole, CRC-checked frames.
"""
import bisect
import os
import struct
import time

from . import _access
from ._errors import CorruptSegment, OffsetOutOfRange
from ._fsutil import fsync_dir
from ._native._core import ffi, lib

LOG_SUFFIX = ".log"
INDEX_INTERVAL = 4096          # bytes of log between sparse index entries
INDEX_ENTRY = struct.Struct("<QQ")      # offset, position
TIME_ENTRY = struct.Struct("<qQ")       # max timestamp before offset, offset
READ_CHUNK = 1 << 20


def segment_name(base_offset):
    return f"{base_offset:020d}{LOG_SUFFIX}"


def list_segments(directory):
    """Sorted base offsets of the segments in a partition directory."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-len(LOG_SUFFIX)]) for n in names
                  if n.endswith(LOG_SUFFIX) and n[:-len(LOG_SUFFIX)].isdigit())


def segment_path(directory, base_offset, suffix=LOG_SUFFIX):
    return os.path.join(directory, f"{base_offset:020d}{suffix}")


def read_index(path, entry):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    usable = len(data) - len(data) % entry.size
    return list(entry.iter_unpack(data[:usable]))


def scan_segment(path, start_offset):
    """Validate a segment frame by frame. Returns (valid_bytes, next_offset, index, timeindex,
    max_timestamp, corrupt_at): corrupt_at is the file position of the first bad frame, or None
    if the file only ends early (a torn tail) or not at all."""
    size = os.path.getsize(path)
    capacity = READ_CHUNK
    buffer = ffi.new("char[]", capacity)
    position, next_offset, max_ts = 0, start_offset, -1
    index, timeindex, since_index = [], [], INDEX_INTERVAL
    with open(path, "rb") as f:
        while position < size:
            want = min(capacity, size - position)
            chunk = os.pread(f.fileno(), want, position)
            ffi.memmove(buffer, chunk, len(chunk))
            # Walk frame by frame to build the indexes as the archiver would.
            walked = 0
            while walked < len(chunk):
                frame_size = lib.sb_frame_check(buffer + walked, len(chunk) - walked)
                if frame_size == lib.SB_EMPTY:
                    break
                if frame_size < 0:
                    return position + walked, next_offset, index, timeindex, max_ts, position + walked
                offset, ts, count, ftype = _frame_fields(buffer + walked)
                if ftype != lib.SB_FRAME_PADDING:
                    if since_index >= INDEX_INTERVAL:
                        index.append((offset, position + walked))
                        timeindex.append((max_ts, offset))
                        since_index = 0
                    next_offset = offset + count
                    if ftype == lib.SB_FRAME_DATA and ts > max_ts:
                        max_ts = ts
                since_index += frame_size
                walked += frame_size
            if walked == 0:
                if len(chunk) < capacity:
                    break  # a torn frame at the end of the file
                capacity *= 2  # one frame bigger than the buffer
                buffer = ffi.new("char[]", capacity)
                continue
            position += walked
    return position, next_offset, index, timeindex, max_ts, None


_FRAME = struct.Struct("<QIHHQqIiIi")


def _frame_fields(ptr):
    word0, crc, ftype, flags, offset, ts, count, klen, hlen, vlen = _FRAME.unpack(
        ffi.buffer(ptr, _FRAME.size))
    return offset, ts, count, ftype


class SegmentWriter:
    """The archiver's side of one partition log: recovery at start, appends from the
    ring, rolling, fsync, retention."""

    def __init__(self, directory, segment_bytes):
        self.directory = directory
        self.segment_bytes = segment_bytes
        _access.make_dir(directory)
        self.fd = None
        self.index_file = self.time_file = None
        self.base_offset = None
        self.state = ffi.new("sb_archive_state *")
        self.entries = ffi.new("sb_index_entry[]", 1024)
        self.entry_count = ffi.new("uint32_t *")
        self.unsynced = 0
        self.synced_position = 0  # the ring position fsynced so far (set by the archiver)
        self.last_sync = 0.0
        self.last_sync_ns = 0
        self.error = None        # the last write error, until archiving works again
        self.error_at = 0.0

    # ---- recovery ----

    def recover(self, log):
        """Open the log after a start: validate the last segment frame by frame and cut a
        torn tail; a corrupt frame in a closed segment is reported, never served.
        Returns the next offset on disk (0 for an empty log)."""
        bases = list_segments(self.directory)
        if not bases:
            return None
        last = bases[-1]
        path = segment_path(self.directory, last)
        valid, next_offset, index, timeindex, max_ts, corrupt_at = scan_segment(path, last)
        size = os.path.getsize(path)
        if valid < size:
            what = "corrupt frame" if corrupt_at is not None else "torn tail"
            log(f"{path}: {what} at byte {valid} (offset {next_offset}): truncating {size - valid} bytes")
            with open(path, "r+b") as f:
                f.truncate(valid)
                os.fsync(f.fileno())
        # The indexes of the last segment may lag or lead the log: rewrite them.
        self._rewrite_indexes(last, index, timeindex)
        self._open(last, valid, next_offset, max_ts)
        return next_offset

    def _rewrite_indexes(self, base, index, timeindex):
        with open(segment_path(self.directory, base, ".index"), "wb") as f:
            f.write(b"".join(INDEX_ENTRY.pack(*e) for e in index))
        with open(segment_path(self.directory, base, ".timeindex"), "wb") as f:
            f.write(b"".join(TIME_ENTRY.pack(*e) for e in timeindex))

    # ---- appending ----

    def _open(self, base_offset, size, next_offset, max_ts):
        self.close()
        path = segment_path(self.directory, base_offset)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _access.file_mode())
        self.index_file = open(segment_path(self.directory, base_offset, ".index"), "ab")
        self.time_file = open(segment_path(self.directory, base_offset, ".timeindex"), "ab")
        self.base_offset = base_offset
        self.state.segment_bytes = size
        self.state.since_index = 0 if size else INDEX_INTERVAL
        self.state.max_timestamp = max_ts
        self.state.next_offset = next_offset

    def start(self, next_offset):
        """Begin a new segment at next_offset (a fresh log, or after a roll)."""
        self._open(next_offset, 0, next_offset, -1)
        fsync_dir(self.directory)

    def archive(self, ring, max_bytes=16 << 20):
        """Copy complete frames from the ring into the segment; returns bytes written.
        On a write error (disk full) the segment is cut back to its last whole frame and
        the error is raised; the ring keeps everything, so nothing is lost."""
        state = self.state
        before = (state.position, state.next_offset, state.segment_bytes, state.since_index,
                  state.max_timestamp)
        room = max(self.segment_bytes - state.segment_bytes, 1)
        written = lib.sb_archive(ring.ptr, self.fd, state, min(max_bytes, room), INDEX_INTERVAL,
                                 self.entries, 1024, self.entry_count)
        if written < 0:
            (state.position, state.next_offset, state.segment_bytes, state.since_index,
             state.max_timestamp) = before
            os.ftruncate(self.fd, state.segment_bytes)
            raise OSError(-written, f"cannot write segment in {self.directory}: {os.strerror(-written)}")
        n = self.entry_count[0]
        if n:
            entries = self.entries
            self.index_file.write(b"".join(INDEX_ENTRY.pack(entries[i].offset, entries[i].position)
                                           for i in range(n)))
            self.time_file.write(b"".join(TIME_ENTRY.pack(entries[i].max_timestamp, entries[i].offset)
                                          for i in range(n)))
        self.unsynced += written
        if state.segment_bytes >= self.segment_bytes:
            self.roll()
        return written

    def roll(self):
        """Close the full segment (fsynced) and start the next at the next offset."""
        self.sync()
        self.start(self.state.next_offset)

    def sync(self):
        if self.fd is not None:
            self.index_file.flush()
            self.time_file.flush()
            os.fsync(self.fd)
        self.unsynced = 0
        self.last_sync = time.monotonic()
        self.last_sync_ns = time.time_ns()

    def close(self):
        if self.fd is not None:
            self.index_file.close()
            self.time_file.close()
            os.close(self.fd)
            self.fd = None

    # ---- retention ----

    def enforce_retention(self, retention_bytes, retention_ms, now_ns, log):
        """Delete whole closed segments, oldest first, beyond the size or age limits."""
        bases = list_segments(self.directory)
        closed = [b for b in bases if b != self.base_offset]
        sizes = {b: os.path.getsize(segment_path(self.directory, b)) for b in bases}
        total = sum(sizes.values())
        removed = []
        for base in closed:
            too_big = retention_bytes is not None and total > retention_bytes
            too_old = False
            if retention_ms is not None and not too_big:
                entries = read_index(segment_path(self.directory, base, ".timeindex"), TIME_ENTRY)
                newest = _segment_newest_timestamp(self.directory, base, entries)
                too_old = newest is not None and newest < now_ns - retention_ms * 1_000_000
            if not (too_big or too_old):
                break
            for suffix in (LOG_SUFFIX, ".index", ".timeindex"):
                try:
                    os.unlink(segment_path(self.directory, base, suffix))
                except FileNotFoundError:
                    pass
            total -= sizes[base]
            removed.append(base)
        if removed:
            log(f"{self.directory}: retention removed {len(removed)} segment(s) from offset {removed[0]}")
        return removed


def _segment_newest_timestamp(directory, base, time_entries):
    """The largest timestamp in a closed segment: scan from its last time index entry."""
    start = 0
    if time_entries:
        index = read_index(segment_path(directory, base, ".index"), INDEX_ENTRY)
        if index:
            start = index[-1][1]
    newest = time_entries[-1][0] if time_entries else None
    reader = SegmentReader(directory)
    for _, ts in reader.scan_timestamps(base, start):
        newest = ts if newest is None or ts > newest else newest
    return newest


class SegmentReader:
    """Reads records from a partition's segment files, sequentially from an offset.
    Used by consumers whose position is no longer in the ring."""

    def __init__(self, directory):
        self.directory = directory
        self.bases = []
        self.base = None
        self.fd = None
        self.position = 0
        self.next_offset = None
        self.capacity = READ_CHUNK
        self.result = ffi.new("sb_parse_result *")
        self.chunk = None      # the bytes last read, from file position chunk_at
        self.chunk_at = 0

    def refresh(self):
        self.bases = list_segments(self.directory)

    def earliest(self):
        self.refresh()
        return self.bases[0] if self.bases else None

    def seek(self, offset):
        """Position at offset; OffsetOutOfRange if no segment holds it (deleted by retention,
        or not archived)."""
        self.refresh()
        i = bisect.bisect_right(self.bases, offset) - 1
        if i < 0:
            raise OffsetOutOfRange(f"offset {offset} is before the earliest retained offset")
        base = self.bases[i]
        position = 0
        for entry_offset, entry_position in read_index(segment_path(self.directory, base, ".index"),
                                                       INDEX_ENTRY):
            if entry_offset > offset:
                break
            position = entry_position
        self._open(base)
        self.position = position
        self.next_offset = offset

    def _open(self, base):
        self.close()
        self.chunk = None
        try:
            self.fd = os.open(segment_path(self.directory, base), os.O_RDONLY)
        except FileNotFoundError:
            raise OffsetOutOfRange(f"segment {base} was deleted (retention)") from None
        self.base = base

    def read(self, max_records, desc, follow=True):
        """Parse up to max_records records at or after next_offset into desc. Returns
        (count, data) where descriptors index into data, or (0, None) at the end of disk
        (of this segment, without follow). Reads a chunk at a time and parses it in
        place, call after call."""
        while True:
            start = self.position - self.chunk_at
            if self.chunk is None or not 0 <= start < len(self.chunk):
                self._load()
                start = 0
            if self.chunk:
                result = self.result
                result.next_offset = self.next_offset
                n = lib.sb_parse(self.chunk, start, len(self.chunk), self.next_offset, max_records,
                                 desc, result)
                if n == lib.SB_CORRUPT:
                    bad = self.chunk_at + result.bad_position
                    raise CorruptSegment(
                        f"corrupt record in {segment_path(self.directory, self.base)} at byte {bad} "
                        f"(after offset {result.next_offset - 1}): CRC or length check failed")
                if result.consumed:
                    self.position += result.consumed
                    self.next_offset = max(self.next_offset, result.next_offset)
                    if n:
                        return n, self.chunk
                    continue
                if start:
                    self._load()  # the next frame runs past this chunk: read from it on
                    continue
                if len(self.chunk) == self.capacity:
                    self.capacity *= 2  # a frame larger than the buffer
                    self._load()
                    continue
            # The end of this segment (so far): move to the next one, if there is one.
            self.chunk = None
            if not follow:
                return 0, None
            self.refresh()
            later = [b for b in self.bases if b > self.base]
            if not later:
                return 0, None
            self._open(later[0])
            self.position = 0

    def _load(self):
        self.chunk = os.pread(self.fd, self.capacity, self.position)
        self.chunk_at = self.position

    def scan_timestamps(self, base, position):
        """(offset, timestamp) of every data frame from a segment position on."""
        self._open(base)
        self.position = position
        self.next_offset = 0
        desc = ffi.new("int64_t[]", 256 * lib.SB_DESC_WORDS)
        try:
            while True:
                n, _ = self.read(256, desc, follow=False)
                if not n:
                    return
                words = ffi.unpack(desc, n * lib.SB_DESC_WORDS)
                for i in range(0, n * lib.SB_DESC_WORDS, lib.SB_DESC_WORDS):
                    yield words[i], words[i + 1]
        finally:
            self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
