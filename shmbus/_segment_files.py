"""A segment file as bytes: its name (`<base:020d>.log`), its sparse `.index` (offset
-> file position) and `.timeindex` (max timestamp so far -> offset), and a
frame-by-frame scan of which of its frames are whole -- what recovery, the
closed-segment check and a reader stepping over damage share (_log.py holds the
writer and the reader)."""
import os
import struct
from typing import List, NamedTuple, Optional, Tuple

from . import _access
from ._access import Trust
from ._backend import FRAME_DATA, FRAME_HEADER_BYTES, FRAME_PADDING, find_frame, frame_length, walk_frames
from ._errors import CorruptFrame

LOG_SUFFIX = ".log"
INDEX_INTERVAL = 4096          # bytes of log between sparse index entries
INDEX_ENTRY = struct.Struct("<QQ")      # offset, position
TIME_ENTRY = struct.Struct("<qQ")       # max timestamp before offset, offset
READ_CHUNK = 1 << 20


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{LOG_SUFFIX}"


def list_segments(directory: str) -> List[int]:
    """Sorted base offsets of the segments in a partition directory."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-len(LOG_SUFFIX)]) for n in names
                  if n.endswith(LOG_SUFFIX) and n[:-len(LOG_SUFFIX)].isdigit())


def segment_path(directory: str, base_offset: int, suffix: str = LOG_SUFFIX) -> str:
    return os.path.join(directory, f"{base_offset:020d}{suffix}")


def read_index(path: str, entry: struct.Struct, trust: Trust) -> List[Tuple[int, int]]:
    try:
        fd = _access.open_file(path, os.O_RDONLY, trust)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    usable = len(data) - len(data) % entry.size
    return list(entry.iter_unpack(data[:usable]))


def align8(n: int) -> int:
    return (n + 7) & ~7


class Damage(NamedTuple):
    """A stretch of a segment file that holds no intact frame, with intact frames after it."""

    position: int          # where it starts in the file
    offset: int            # the offset the frame there should carry
    resume_position: int   # the next intact frame
    resume_offset: int     # and its offset: offsets offset..resume_offset-1 cannot be read


class SegmentScan(NamedTuple):
    """What a frame-by-frame validation of a segment file found."""

    valid_bytes: int       # where the last intact frame ends
    next_offset: int       # the offset after it: one past the highest offset found
    index_entries: List[Tuple[int, int]]
    time_entries: List[Tuple[int, int]]
    max_timestamp: int
    damage: List[Damage]   # damaged stretches that intact frames follow
    size: int              # the file's size: size - valid_bytes bytes follow the last intact frame


# A data frame's length word may overstate it by less than a frame header and still
# pass its check (sb_frame_check), so the frame after it may start up to this many bytes
# before where that length word leads.
LENGTH_SLACK = FRAME_HEADER_BYTES - 8


def find_intact_frame(fd: int, size: int, position: int, min_offset: int) -> Optional[Tuple[int, int]]:
    """(position, offset) of the first intact frame after the damage at position whose
    offset is >= min_offset, or None: where a reader resyncs. The search starts
    LENGTH_SLACK bytes back (every frame there has an offset below min_offset, unless it
    is one an overstated length word swallowed) and goes on frame-aligned, a chunk at a
    time, to the end of the file."""
    position = align8(max(position - LENGTH_SLACK, 0))
    window = READ_CHUNK
    while position < size:
        chunk = os.pread(fd, min(window, size - position), position)
        if not chunk:
            return None
        final = position + len(chunk) >= size
        found, go_on = find_frame(chunk, 0, min_offset, final)
        if found is not None:
            return position + found[0], found[1].offset
        if final:
            return None
        if go_on == 0:
            # A frame at the chunk's start runs past it: read it whole (or to the file's end).
            window = max(window, align8(frame_length(chunk)))
            continue
        position += go_on
        window = READ_CHUNK
    return None


def scan_segment(path: str, base: int, position: int = 0, offset: Optional[int] = None) -> SegmentScan:
    """Validate a segment file frame by frame from position (a frame that must carry
    offset; the file's start and its base by default): CRC, lengths, and offsets that run
    on. At a frame that fails, look for an intact one after it: if there is one, the
    stretch between is damage and the scan goes on from there; if not, the scan ends
    (size - valid_bytes bytes follow the last intact frame: a torn tail after a crash).
    Builds the indexes as the archiver would."""
    size = os.path.getsize(path)
    expected = base if offset is None else offset
    valid_bytes, max_ts = position, -1
    index: List[Tuple[int, int]] = []
    timeindex: List[Tuple[int, int]] = []
    damage: List[Damage] = []
    since_index = INDEX_INTERVAL
    capacity = READ_CHUNK
    with os.fdopen(_access.open_file(path, os.O_RDONLY, _access.own_trust()), "rb") as f:
        fd = f.fileno()
        while position < size:
            chunk = os.pread(fd, min(capacity, size - position), position)
            capacity = READ_CHUNK
            walked, bad = 0, False
            try:
                for at, frame_size, frame in walk_frames(chunk):
                    if frame.type == FRAME_PADDING:
                        walked = at + frame_size
                        continue
                    if frame.offset != expected:
                        bad = True  # an intact frame after a hole in the offsets
                        break
                    if since_index >= INDEX_INTERVAL:
                        index.append((frame.offset, position + at))
                        timeindex.append((max_ts, frame.offset))
                        since_index = 0
                    expected = frame.offset + frame.record_count
                    if frame.type == FRAME_DATA and frame.timestamp_ns > max_ts:
                        max_ts = frame.timestamp_ns
                    since_index += frame_size
                    walked = at + frame_size
            except CorruptFrame:
                bad = True
            position += walked
            if walked:
                valid_bytes = position
                if not bad:
                    continue
            if not bad:
                length = frame_length(chunk)
                if len(chunk) >= FRAME_HEADER_BYTES and len(chunk) < align8(length) <= size - position:
                    capacity = align8(length)  # one frame bigger than the buffer
                    continue
            # No intact frame at position: damage if an intact frame follows, else the end.
            found = find_intact_frame(fd, size, position, expected)
            if found is None:
                break
            if found[1] > expected:  # else only a length word was wrong: no record is lost
                damage.append(Damage(position, expected, found[0], found[1]))
            position, expected = found
            since_index = INDEX_INTERVAL  # an index entry at the frame the scan resumed at
    return SegmentScan(valid_bytes, expected, index, timeindex, max_ts, damage, size)


def check_closed_segment(directory: str, base: int, next_base: int) -> List[str]:
    """What is wrong where a closed segment ends: damage in its last index interval, bytes
    after its last intact frame, or a hole before the next segment's base (a file cut
    short). Cheap: it reads from the last index entry that lies in the file, so damage
    further back is found by the readers that cross it."""
    path = segment_path(directory, base)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return []
    position, offset = 0, base
    for entry_offset, entry_position in read_index(segment_path(directory, base, ".index"), INDEX_ENTRY,
                                                   _access.own_trust()):
        if entry_position >= size or not base <= entry_offset < next_base:
            break  # the index of a file cut short points past its end
        position, offset = entry_position, entry_offset
    scan = scan_segment(path, base, position, offset)
    if position and (scan.valid_bytes == position < scan.size
                     or bool(scan.damage) and scan.damage[0].position == position):
        scan = scan_segment(path, base)  # no intact frame where the index points: read all of it
    problems = [f"{path}: damaged at byte {d.position}: offsets {d.offset}..{d.resume_offset - 1} "
                f"cannot be read" for d in scan.damage]
    rest = scan.size - scan.valid_bytes
    if scan.next_offset < next_base:
        problems.append(f"{path}: ends at offset {scan.next_offset} (byte {scan.valid_bytes}"
                        + (f", then {rest} bytes that are no intact frame" if rest else "")
                        + f") but the next segment begins at {next_base}: offsets {scan.next_offset}.."
                        f"{next_base - 1} are missing")
    else:
        if rest:
            problems.append(f"{path}: {rest} bytes after its last intact frame (byte {scan.valid_bytes}) "
                            f"are no frame")
        if scan.next_offset > next_base:
            problems.append(f"{path}: runs to offset {scan.next_offset}, past the next segment's base "
                            f"{next_base}")
    return problems
