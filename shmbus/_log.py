"""The on-disk log of one partition: segment files named by their base offset,
`<base:020d>.log`, in the same frame format as the ring, each with a sparse
`.index` (offset -> file position) and `.timeindex` (max timestamp so far ->
offset) written every INDEX_INTERVAL bytes.

The supervisor's archiver appends (SegmentWriter); consumers that fell out of
the ring read (SegmentReader). Both see only whole, CRC-checked frames. The files'
names, indexes and the frame-by-frame scan are _segment_files.py's.
"""
import bisect
import logging
import os
import time
from typing import BinaryIO, Iterator, List, Optional, Tuple

from . import _access
from ._access import Trust
from ._backend import (DESC_OFFSET, DESC_TIMESTAMP, DESC_WORDS, FRAME_HEADER_BYTES, ArchiveState, FrameParser,
                       Ring, frame_length)
from ._errors import CorruptFrame, CorruptSegment, OffsetOutOfRange
from ._fsutil import fsync_dir
from ._segment_files import (INDEX_ENTRY, INDEX_INTERVAL, LOG_SUFFIX, READ_CHUNK, TIME_ENTRY, align8,
                             check_closed_segment, find_intact_frame, list_segments, read_index, scan_segment,
                             segment_path)

# Only the supervisor writes segments: what it finds and does goes to its log.
logger = logging.getLogger("shmbus.supervisor")


class SegmentWriter:
    """The archiver's side of one partition log: recovery at start, appends from the
    ring, rolling, fsync, retention."""

    def __init__(self, directory: str, segment_bytes: int):
        self.directory = directory
        self.segment_bytes = segment_bytes
        _access.make_dir(directory)
        self.fd: Optional[int] = None
        self.index_file: Optional[BinaryIO] = None
        self.time_file: Optional[BinaryIO] = None
        self.base_offset: Optional[int] = None
        self.archive_state = ArchiveState()
        # Where the archiver is: position, next_offset, segment_bytes, since_index, max_timestamp.
        self.state = self.archive_state.c
        self.unsynced = 0
        self.synced_position = 0  # the ring position fsynced so far (set by the archiver)
        self.last_sync = 0.0
        self.last_sync_ns = 0
        self.error: Optional[str] = None   # the last write error, until archiving works again
        self.error_at = 0.0
        # What recovery found wrong in the log: (segment base or None, problem), reported by describe.
        self.problems: List[Tuple[Optional[int], str]] = []

    # ---- recovery ----

    def recover(self, crashed: bool, known_end: Optional[int] = None) -> Optional[int]:
        """Open the log after a start; returns the offset the next record gets (None: no
        segments and nothing known, a fresh log).

        Closed segments are checked where they end (check_closed_segment). The last one is
        validated frame by frame, and only a torn tail is cut: bytes after the last intact
        frame that no intact frame follows, and only after a crash (after a clean stop
        every frame was written whole: what fails is damage). Damage is reported
        (self.problems) and kept, never cut; new records then go to a new segment after the
        highest offset found, so no offset is reused. known_end is where the log ended at
        the last clean stop: offsets below it are never given out again, even if the disk
        lost them."""
        self.problems = []
        bases = list_segments(self.directory)
        for base, next_base in zip(bases, bases[1:]):
            for problem in check_closed_segment(self.directory, base, next_base):
                self.report(base, problem)
        if not bases:
            if known_end:
                self.report(None, f"{self.directory}: no segment files, but the log ended at offset "
                                  f"{known_end} at the last clean stop: offsets 0..{known_end - 1} are "
                                  f"missing; new records start at {known_end}")
            return known_end
        last = bases[-1]
        path = segment_path(self.directory, last)
        scan = scan_segment(path, last)
        append_here = True
        for d in scan.damage:
            self.report(last, f"{path}: damaged at byte {d.position}: offsets {d.offset}..{d.resume_offset - 1} "
                              f"cannot be read; kept, new records go to a new segment")
            append_here = False
        rest = scan.size - scan.valid_bytes
        if rest and crashed:
            logger.warning(f"{path}: torn tail at byte {scan.valid_bytes} (offset {scan.next_offset}): "
                           f"truncating {rest} bytes")
            fd = _access.open_file(path, os.O_RDWR, _access.own_trust())
            try:
                os.ftruncate(fd, scan.valid_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        elif rest:
            self.report(last, f"{path}: {rest} bytes after its last intact frame (byte {scan.valid_bytes}, "
                              f"offset {scan.next_offset}) after a clean stop: damage, kept")
            append_here = False
        next_offset = scan.next_offset
        if known_end is not None and known_end > next_offset:
            self.report(last, f"{path}: the log ended at offset {known_end} at the last clean stop, but its "
                              f"segments end at {next_offset}: offsets {next_offset}..{known_end - 1} are "
                              f"missing; new records start at {known_end}")
            next_offset = known_end
            append_here = False
        # The indexes of the last segment may lag or lead the log: rewrite them.
        self._rewrite_indexes(last, scan.index_entries, scan.time_entries)
        if append_here:
            self._open(last, scan.valid_bytes, next_offset, scan.max_timestamp)
        elif next_offset == last:
            # Not one intact frame, and the next records would get its name: keep it beside.
            for suffix in (LOG_SUFFIX, ".index", ".timeindex"):
                aside = segment_path(self.directory, last, suffix)
                if os.path.exists(aside):
                    os.replace(aside, aside + ".damaged")
            self.report(None, f"{path}: holds no intact frame: kept as {path}.damaged")
        return next_offset

    def report(self, base: Optional[int], problem: str) -> None:
        """Damage found in the log: logged, and kept for describe while its segment exists."""
        logger.error(problem)
        self.problems.append((base, problem))

    def damage(self) -> List[str]:
        """The problems recovery found, in segments that still exist (retention may delete them)."""
        bases = set(list_segments(self.directory)) if self.problems else set()
        return [problem for base, problem in self.problems if base is None or base in bases]

    def _rewrite_indexes(self, base: int, index: List[Tuple[int, int]], timeindex: List[Tuple[int, int]]) -> None:
        with os.fdopen(_access.create_file(segment_path(self.directory, base, ".index")), "wb") as f:
            f.write(b"".join(INDEX_ENTRY.pack(*e) for e in index))
        with os.fdopen(_access.create_file(segment_path(self.directory, base, ".timeindex")), "wb") as f:
            f.write(b"".join(TIME_ENTRY.pack(*e) for e in timeindex))

    # ---- appending ----

    def _open(self, base_offset: int, size: int, next_offset: int, max_ts: int) -> None:
        self.close()
        path = segment_path(self.directory, base_offset)
        self.fd = _append(path)
        self.index_file = os.fdopen(_append(segment_path(self.directory, base_offset, ".index")), "ab")
        self.time_file = os.fdopen(_append(segment_path(self.directory, base_offset, ".timeindex")), "ab")
        self.base_offset = base_offset
        self.state.segment_bytes = size
        self.state.since_index = 0 if size else INDEX_INTERVAL
        self.state.max_timestamp = max_ts
        self.state.next_offset = next_offset

    def start(self, next_offset: int) -> None:
        """Begin a new segment at next_offset (a fresh log, or after a roll)."""
        self._open(next_offset, 0, next_offset, -1)
        fsync_dir(self.directory)

    def archive(self, ring: Ring, max_bytes: int = 16 << 20) -> int:
        """Copy complete frames from the ring into the segment; returns bytes written.
        On a write error (disk full) the segment is cut back to its last whole frame and
        the error is raised; the ring keeps everything, so nothing is lost."""
        assert self.fd is not None and self.index_file is not None and self.time_file is not None
        state = self.state
        before = self.archive_state.snapshot()
        room = max(self.segment_bytes - state.segment_bytes, 1)
        try:
            written, entries = ring.archive(self.fd, self.archive_state, min(max_bytes, room), INDEX_INTERVAL)
        except OSError as e:
            self.archive_state.restore(before)
            os.ftruncate(self.fd, state.segment_bytes)
            raise OSError(e.errno, f"cannot write segment in {self.directory}: {e.strerror}") from None
        if entries:
            self.index_file.write(b"".join(INDEX_ENTRY.pack(offset, position)
                                           for offset, position, _ in entries))
            self.time_file.write(b"".join(TIME_ENTRY.pack(max_ts, offset)
                                          for offset, _, max_ts in entries))
        self.unsynced += written
        if state.segment_bytes >= self.segment_bytes:
            self.roll()
        return written

    def roll(self) -> None:
        """Close the full segment (fsynced) and start the next at the next offset."""
        self.sync()
        self.start(self.state.next_offset)

    def sync(self) -> None:
        if self.fd is not None:
            assert self.index_file is not None and self.time_file is not None
            self.index_file.flush()
            self.time_file.flush()
            os.fsync(self.fd)
        self.unsynced = 0
        self.last_sync = time.monotonic()
        self.last_sync_ns = time.time_ns()

    def close(self) -> None:
        if self.fd is not None:
            assert self.index_file is not None and self.time_file is not None
            self.index_file.close()
            self.time_file.close()
            os.close(self.fd)
            self.fd = None

    # ---- retention ----

    def enforce_retention(self, retention_bytes: Optional[int], retention_ms: Optional[int],
                          now_ns: int) -> List[int]:
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
                entries = read_index(segment_path(self.directory, base, ".timeindex"), TIME_ENTRY,
                                     _access.own_trust())
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
            logger.info(f"{self.directory}: retention removed {len(removed)} segment(s) from offset {removed[0]}")
        return removed


def _segment_newest_timestamp(directory: str, base: int, time_entries: List[Tuple[int, int]]) -> Optional[int]:
    """The largest timestamp in a closed segment: scan from its last time index entry."""
    newest = time_entries[-1][0] if time_entries else None
    position, offset = 0, base
    index = read_index(segment_path(directory, base, ".index"), INDEX_ENTRY, _access.own_trust())
    if time_entries and index:
        offset, position = index[-1]
    try:
        for _, ts in SegmentReader(directory, _access.own_trust()).scan_timestamps(base, position, offset):
            newest = ts if newest is None or ts > newest else newest
    except CorruptSegment as e:
        logger.warning(f"retention: {e}")  # judged by what could be read
    return newest


class SegmentReader:
    """Reads records from a partition's segment files, sequentially from an offset.
    Used by consumers whose position is no longer in the ring.

    Damage (a frame that fails its checks, a hole in the offsets, a closed segment that
    ends before the next one begins) raises CorruptSegment with the first offset it
    cannot read, and the position stays there: a reader never moves past records by
    itself. A seek past that offset resyncs: on at the next intact frame."""

    def __init__(self, directory: str, trust: Trust, topic_partition: Optional[Tuple[str, int]] = None):
        self.directory = directory
        self.trust = trust   # only files it accepts are read (a client: its supervisor's, closed to "other")
        self.topic_partition = topic_partition
        self.bases: List[int] = []
        self.base: Optional[int] = None
        self.fd: Optional[int] = None
        self.position = 0
        self.expected = 0            # the offset the frame at position must carry
        self.next_offset: Optional[int] = None   # the next offset to hand out; below it, skipped
        self.from_index = False      # position came from the index and no frame confirmed it yet
        self.closed = False          # a later segment exists and this one was read again since
        self.capacity = READ_CHUNK
        self.parser = FrameParser()
        self.last_consumed = 0     # bytes of frames the last read() parsed
        self.chunk: Optional[bytes] = None      # the bytes last read, from file position chunk_at
        self.chunk_at = 0

    def refresh(self) -> None:
        self.bases = list_segments(self.directory)

    def earliest(self) -> Optional[int]:
        self.refresh()
        return self.bases[0] if self.bases else None

    def seek(self, offset: int) -> None:
        """Position at offset; OffsetOutOfRange if no segment holds it (deleted by retention,
        or not archived)."""
        self.refresh()
        i = bisect.bisect_right(self.bases, offset) - 1
        if i < 0:
            raise OffsetOutOfRange(f"offset {offset} is before the earliest retained offset")
        base = self.bases[i]
        self._open(base, 0, base)
        assert self.fd is not None
        size = os.fstat(self.fd).st_size
        for entry_offset, entry_position in read_index(segment_path(self.directory, base, ".index"),
                                                       INDEX_ENTRY, self.trust):
            if entry_offset > offset or entry_position >= size:
                break  # (the index of a file cut short points past its end)
            self.position, self.expected = entry_position, entry_offset
        self.from_index = self.position != 0
        self.next_offset = offset

    def _open(self, base: int, position: int, expected: int) -> None:
        self.close()
        self.chunk = None
        try:
            self.fd = _access.open_file(segment_path(self.directory, base), os.O_RDONLY, self.trust)
        except FileNotFoundError:
            raise OffsetOutOfRange(f"segment {base} was deleted (retention)") from None
        self.base = base
        self.position, self.expected = position, expected
        self.from_index = self.closed = False

    def read(self, max_records: int, follow: bool = True) -> Tuple[int, Optional[bytes]]:
        """Parse up to max_records records at or after next_offset. Returns (count, data):
        words(count) describes them, their positions indexing into data; or (0, None) at
        the end of disk (of this segment, without follow). Reads a chunk at a time and
        parses it in place, call after call. CorruptSegment at damage (see the class)."""
        self.last_consumed = 0
        while True:
            assert self.next_offset is not None and self.base is not None
            start = self.position - self.chunk_at
            if self.chunk is None or not 0 <= start < len(self.chunk):
                self._load()
                start = 0
            chunk = self.chunk
            assert chunk is not None
            if chunk:
                try:
                    n, consumed, after = self.parser.parse(chunk, start, self.expected, self.next_offset,
                                                           max_records)
                except CorruptFrame as e:
                    assert e.position is not None
                    if e.position > start:
                        # Intact records before the damage: they go out first.
                        n, consumed, after = self.parser.parse(chunk, start, self.expected, self.next_offset,
                                                               max_records, end=e.position)
                    elif self.from_index:
                        self._open(self.base, 0, self.base)  # the index led astray: read from the start
                        continue
                    else:
                        self._step_over(self.chunk_at + e.position)
                        continue
                if consumed:
                    self.from_index = False
                    self.position += consumed
                    self.last_consumed += consumed
                    self.expected = after
                    self.next_offset = max(self.next_offset, after)
                    if n:
                        return n, chunk
                    continue
                if start:
                    self._load()  # the next frame runs past this chunk: read from it on
                    continue
                length = align8(frame_length(chunk))
                if len(chunk) >= FRAME_HEADER_BYTES and len(chunk) < length <= self._size() - self.position:
                    self.capacity = max(self.capacity, length)  # a frame larger than the buffer
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
            if not self.closed:
                self.closed = True  # it was written to its end before the next began: read that
                continue
            if self.position < self._size() or self.expected < later[0]:
                self._check_retained(later[0])
                self._step_over(self.position)  # it stops short of its end, or of the next base
                continue
            self._open(later[0], 0, later[0])

    def _check_retained(self, next_base: int) -> None:
        """Retention deletes whole segments, oldest first, also the one this reader is in: the
        offsets from here to the next segment are not retained (OffsetOutOfRange, as for a
        seek there), not damage."""
        if self.base not in self.bases:
            raise OffsetOutOfRange(f"offsets {self.expected}..{next_base - 1} were deleted (retention)")

    def _size(self) -> int:
        assert self.fd is not None
        return os.fstat(self.fd).st_size

    def _step_over(self, position: int) -> None:
        """No intact frame at position: a frame that fails its checks, a hole in the offsets,
        or a closed segment's end before the next one's base. Go on past the damage if
        next_offset is beyond it (a seek stepped over it), else raise CorruptSegment."""
        assert self.base is not None and self.fd is not None and self.next_offset is not None
        wanted = self.next_offset
        path = segment_path(self.directory, self.base)
        found = find_intact_frame(self.fd, self._size(), position, self.expected)
        if found is not None:
            resume: Optional[int] = found[1]
            if found[1] <= wanted:
                self.position, self.expected = found
                return
            what = (f"corrupt record in {path} at byte {position} (offset {self.expected}): CRC, length or "
                    f"offset check failed" if position != found[0] else
                    f"offsets {self.expected}..{found[1] - 1} are missing from {path} (at byte {position})")
        else:
            self.refresh()
            later = [b for b in self.bases if b > self.base]
            resume = later[0] if later else None
            if resume is not None:
                self._check_retained(resume)
            if resume is not None and resume <= wanted:
                self._open(resume, 0, resume)
                return
            what = (f"corrupt record in {path} at byte {position} (offset {self.expected}): CRC, length or "
                    f"offset check failed" if position < self._size() else
                    f"{path} ends at offset {self.expected} (byte {position}) but the next segment begins "
                    f"at {resume}: offsets {self.expected}..{(resume or 0) - 1} are missing")
        tp = self.topic_partition
        where = f"{tp[0]}/{tp[1]}: " if tp is not None else ""
        step = f"seek to {wanted + 1} to step over it" + (f", to {resume} to step over all" if resume else "")
        raise CorruptSegment(f"{where}{what}; offset {wanted} cannot be read ({step})",
                             topic_partition=tp, offset=wanted, resume_offset=resume, path=path,
                             position=position)

    def words(self, n: int) -> List[int]:
        """The descriptor words of the last read's n records (shmbus.h, SB_DESC_*)."""
        return self.parser.words(n)

    def _load(self) -> None:
        assert self.fd is not None
        self.chunk = os.pread(self.fd, self.capacity, self.position)
        self.chunk_at = self.position

    def scan_timestamps(self, base: int, position: int, offset: int) -> Iterator[Tuple[int, int]]:
        """(offset, timestamp) of every data frame of segment base from position (the frame
        at offset) on."""
        self._open(base, position, offset)
        self.next_offset = offset
        try:
            while True:
                n, _ = self.read(self.parser.max_records, follow=False)
                if not n:
                    return
                words = self.words(n)
                for i in range(0, len(words), DESC_WORDS):
                    yield words[i + DESC_OFFSET], words[i + DESC_TIMESTAMP]
        finally:
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def time_index_start(log_dir: str, timestamp: int, trust: Trust) -> Optional[int]:
    """The offset to scan from for the first record with a timestamp >= timestamp (None: no
    segments). A segment's time index entry (max, offset) says that max is the largest
    timestamp of the segment's records before offset, so the first entry whose max reaches
    timestamp puts the record in the interval before it. Nothing covers a segment's last
    interval (the next segment's index starts over), so a closed segment's last interval is
    scanned before moving on to the next segment; in the last segment, the scan goes on
    from its last entry (into the ring)."""
    bases = list_segments(log_dir)
    for i, base in enumerate(bases):
        start = base
        for max_before, offset in read_index(segment_path(log_dir, base, ".timeindex"), TIME_ENTRY, trust):
            if max_before >= timestamp:
                return start
            start = offset
        if i == len(bases) - 1 or _interval_reaches(log_dir, base, start, timestamp, trust):
            return start
    return None


def _interval_position(directory: str, base: int, offset: int, trust: Trust) -> Tuple[int, int]:
    """(position, offset) of the index entry at offset ((0, base) if the index has none)."""
    for entry_offset, position in read_index(segment_path(directory, base, ".index"), INDEX_ENTRY, trust):
        if entry_offset == offset:
            return position, offset
    return 0, base


def _interval_reaches(directory: str, base: int, offset: int, timestamp: int, trust: Trust) -> bool:
    """Whether a record from offset to the end of segment base has a timestamp >= timestamp.
    A segment it cannot read counts as reaching it: the scan that follows reports why."""
    reader = SegmentReader(directory, trust)
    try:
        return any(ts >= timestamp for _, ts in
                   reader.scan_timestamps(base, *_interval_position(directory, base, offset, trust)))
    except (CorruptSegment, OffsetOutOfRange):
        return True


def _append(path: str) -> int:
    """A segment or index file of the supervisor's, open for appending (made if absent)."""
    fd = _access.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _access.own_trust())
    _access.own_fd(fd)
    return fd
