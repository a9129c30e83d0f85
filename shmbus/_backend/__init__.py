"""The C boundary: the only package that calls the compiled core (shmbus/_native),
one module per concept of the core, like its C files (pyzmq's cffi backend).

Everything else works with the classes here -- Ring, Writer, Cursor, ReadBuffer,
WaitSet, ArchiveState, FrameParser, ControlPage -- and with exceptions, never with
return codes: `core.raise_for` turns every negative code into its exception, in one
place (pyzmq's _check_rc). Sizes and word indexes come from cffi (what shmbus.h
declares), never from a copy.

The per-record paths are C too (fastpath.py): a send, a Message, a step of
iteration each cost less than one cffi call would. They hand every case they do
not handle -- and every error -- to the Python code, which goes through the
classes here.
"""
from .control import ControlPage
from .core import (CONTROL_GROUPS, CONTROL_MEMBERS, DESC_HEADERS_AT, DESC_HEADERS_LEN, DESC_KEY_AT, DESC_KEY_LEN,
                   DESC_OFFSET, DESC_TIMESTAMP, DESC_VALUE_AT, DESC_VALUE_LEN, DESC_WORDS, FRAME_ABORTED, FRAME_DATA,
                   FRAME_HEADER_BYTES, FRAME_PADDING, INDEX_STRIDE, MAX_SLOTS, NULL, PLAIN_DESC_WORDS,
                   PLAIN_TIMESTAMP, PLAIN_VALUE_LEN, RING_ARCHIVE_ERROR, RING_DELETED, RING_DURABLE, RING_RETIRED,
                   RING_RETIRING, CData, c_buffer, crc32c, int64_array, int64_buffer,
                   keep_freed_heap, max_record_bytes, murmur2, raise_for)
from .fastpath import ConsumerBase, ProducerBase, ReservedView, Route, bind_linger, decode, decode_plain
from .frames import FrameHeader, FrameParser, find_frame, frame_length, walk_frames
from .reader import STOPPED, BatchScratch, Cursor, ReadBuffer, StopWord, WaitSet, read_batch, read_views
from .ring import (SLOT_CANCELLED, SLOT_CLAIMED, SLOT_IDLE, SLOT_PUBLISHING, SLOT_REVOKED, ArchiveState, Ring,
                   RingStats, SlotInfo)
from .writer import RECORD_WORDS, Writer

__all__ = [
    "ControlPage", "CONTROL_GROUPS", "CONTROL_MEMBERS", "DESC_HEADERS_AT", "DESC_HEADERS_LEN", "DESC_KEY_AT",
    "DESC_KEY_LEN", "DESC_OFFSET", "DESC_TIMESTAMP", "DESC_VALUE_AT", "DESC_VALUE_LEN", "DESC_WORDS",
    "FRAME_ABORTED", "FRAME_DATA", "FRAME_HEADER_BYTES", "FRAME_PADDING", "INDEX_STRIDE", "MAX_SLOTS", "NULL",
    "PLAIN_DESC_WORDS", "PLAIN_TIMESTAMP", "PLAIN_VALUE_LEN", "RING_ARCHIVE_ERROR", "RING_DELETED", "RING_DURABLE",
    "RING_RETIRED", "RING_RETIRING", "SLOT_CANCELLED", "SLOT_CLAIMED", "SLOT_IDLE", "SLOT_PUBLISHING",
    "SLOT_REVOKED", "CData", "c_buffer", "crc32c", "int64_array", "int64_buffer", "keep_freed_heap", "max_record_bytes", "murmur2",
    "raise_for", "ConsumerBase", "ProducerBase", "ReservedView", "Route", "bind_linger", "decode", "decode_plain",
    "FrameHeader",
    "FrameParser", "find_frame", "frame_length", "walk_frames", "BatchScratch", "Cursor", "ReadBuffer", "WaitSet",
    "read_batch", "read_views", "ArchiveState", "Ring", "RingStats", "SlotInfo", "Writer",
    "STOPPED", "StopWord", "RECORD_WORDS",
]
