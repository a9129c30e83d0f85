"""RecordBatch: the records of one partition as columns, from Consumer.poll_batch.

No Python object per record: offsets and timestamps are numpy arrays, the values
stay in one block of bytes -- the batch's own copy, or (copy=False) the ring itself
-- and become objects only when asked for: `values[i]`, `as_numpy(dtype)` (one array
over all of them), iteration (Messages).

A zero-copy batch views the ring, and producers write over the ring. Its views stay
valid because the batch holds a lease (lease.c): producers do not overwrite what it
views while the lease lasts -- the consumer's view_lease, 0.1 s by default -- and past
that, a producer that needs the space revokes it and goes on. Nothing is silently
garbage: release() (or the next poll) then raises LeaseRevoked, saying the views may
have been overwritten while they were used. So a slow or dead zero-copy reader holds
a producer up for at most view_lease, and only once it is within a quarter ring of
being lapped (further behind, it gets a copy instead: see Consumer.poll_batch).
"""
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Sequence, Union, overload

from . import _numpy
from ._backend import (DESC_HEADERS_AT, DESC_HEADERS_LEN, DESC_KEY_AT, DESC_KEY_LEN, DESC_OFFSET, DESC_TIMESTAMP,
                       DESC_VALUE_AT, DESC_VALUE_LEN, DESC_WORDS, PLAIN_DESC_WORDS, PLAIN_TIMESTAMP, PLAIN_VALUE_LEN)
from ._codec import decode_headers, encode_headers
from ._errors import Closed, LeaseRevoked
from ._types import Message

if TYPE_CHECKING:
    import numpy

_new_tuple = tuple.__new__


class RecordBatch:
    """Records of one partition, in offset order, as columns.

      len(batch), batch.topic, batch.partition
      batch.offsets, batch.timestamps_ns   numpy int64 arrays
      batch.values, batch.keys             sequences of bytes (None for a null), built when touched;
                                           memoryviews into the ring for a zero-copy batch
      batch.as_numpy(dtype)                an (n,) array of dtype over the values
      for msg in batch                     Messages
      batch.release()                      done with it (a zero-copy batch: check its views held)

    `zero_copy` says whether the values view the ring (poll_batch(copy=False) when the
    ring could lease them) or the batch's own bytes.
    """

    __slots__ = ("topic", "partition", "offsets", "timestamps_ns", "zero_copy", "_data", "_value_at", "_value_len",
                 "_key_at", "_key_len", "_headers_at", "_headers_len", "_end_lease", "_views", "_released", "_packed")

    def __init__(self, topic: str, partition: int, offsets: "numpy.ndarray", timestamps_ns: "numpy.ndarray",
                 data: Any, value_at: "numpy.ndarray", value_len: "numpy.ndarray",
                 key_at: Optional["numpy.ndarray"] = None, key_len: Optional["numpy.ndarray"] = None,
                 headers_at: Optional["numpy.ndarray"] = None, headers_len: Optional["numpy.ndarray"] = None,
                 end_lease: Optional[Callable[[], bool]] = None, packed: bool = False):
        self.topic = topic
        self.partition = partition
        self.offsets = offsets
        self.timestamps_ns = timestamps_ns
        self.zero_copy = end_lease is not None
        self._data = data           # a numpy uint8 array or bytes (copies), or a memoryview of the ring
        self._value_at = value_at   # positions in _data, and lengths (-1: None)
        self._value_len = value_len
        self._key_at = key_at       # None: no record has a key
        self._key_len = key_len
        self._headers_at = headers_at   # None: no record has headers
        self._headers_len = headers_len
        self._end_lease = end_lease     # a zero-copy batch: lets go of the lease, False if it was revoked
        self._views: List[memoryview] = []   # views handed out, released with the batch
        self._released = False
        self._packed = packed   # values back to back, in order (value_at is their running sum)

    # ---- columns ----

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def values(self) -> "Column":
        """The values, built when touched: bytes (memoryviews of the ring if zero_copy), None for a null."""
        self._check()
        return Column(self, self._value_at, self._value_len)

    @property
    def keys(self) -> "Column":
        """The keys, like values."""
        self._check()
        if self._key_at is None or self._key_len is None:
            return Column(self, None, None)
        return Column(self, self._key_at, self._key_len)

    def as_numpy(self, dtype: Any) -> "numpy.ndarray":
        """An (n,) array of dtype over the values; every value must be dtype.itemsize bytes
        (ValueError naming the first that is not). A view of the batch's bytes when the
        values are evenly spaced in them -- always for records of one size without keys --
        else a copy. A zero-copy batch's view is read-only and valid until release()."""
        self._check()
        np = _numpy.require("RecordBatch.as_numpy")
        dtype = np.dtype(dtype)
        lengths = self._value_len
        if lengths.min(initial=dtype.itemsize) != dtype.itemsize or lengths.max(initial=dtype.itemsize) != dtype.itemsize:
            i = int(np.flatnonzero(lengths != dtype.itemsize)[0])
            size = "None" if lengths[i] < 0 else f"{int(lengths[i])} bytes"
            raise ValueError(f"as_numpy({dtype}): every value must be {dtype.itemsize} bytes, but the value at "
                             f"offset {int(self.offsets[i])} ({self.topic}/{self.partition}) is {size}")
        n = len(lengths)
        if n == 0:
            return np.empty(0, dtype)
        at = self._value_at
        stride = int(at[1] - at[0]) if n > 1 else dtype.itemsize
        # Values packed back to back (a plain read) are evenly spaced once their sizes are equal.
        if stride >= dtype.itemsize and (n < 3 or self._packed or bool(np.all(np.diff(at) == stride))):
            array = np.ndarray((n,), dtype, buffer=self._data, offset=int(at[0]), strides=(stride,))
            if self.zero_copy:
                return array   # read-only, like the ring view it is made from
            # Bytes read from a segment file are immutable: a copy of them is what can be written.
            return array if array.flags.writeable else array.copy()
        # Unevenly spaced (wrap-around, keys of different sizes): gather them.
        out = np.empty(n, dtype)
        rows = out.view(np.uint8).reshape(n, dtype.itemsize)
        source = np.frombuffer(self._data, np.uint8)
        for i in range(n):
            start = int(at[i])
            rows[i] = source[start:start + dtype.itemsize]
        return out

    def __iter__(self) -> Iterator[Message]:
        self._check()
        topic, partition = self.topic, self.partition
        values = self.values
        keys = self.keys
        for i, (offset, timestamp) in enumerate(zip(self.offsets.tolist(), self.timestamps_ns.tolist())):
            yield _new_tuple(Message, (topic, partition, offset, timestamp, keys[i], values[i], self._headers(i)))

    def _headers(self, i: int) -> tuple:
        if self._headers_at is None or self._headers_len is None or self._headers_len[i] <= 0:
            return ()
        start = int(self._headers_at[i])
        return decode_headers(bytes(self._data[start:start + int(self._headers_len[i])]))

    def _slice(self, at: int, length: int) -> Union[bytes, memoryview, None]:
        if length < 0:
            return None
        if self.zero_copy:
            view = self._data[at:at + length]
            self._views.append(view)
            return view
        data = self._data
        return data[at:at + length] if type(data) is bytes else data[at:at + length].tobytes()

    # ---- lifetime ----

    def release(self) -> None:
        """Done with the batch: its values, keys and arrays may not be used after this. For a
        zero-copy batch, lets the ring's producers write over what it viewed, and raises
        LeaseRevoked if one already did (its views were held past the lease while a
        producer needed the space: what was read from them may be garbage). Once only;
        the next poll, and closing the consumer, release it too."""
        if self._released:
            return
        self._released = True
        end_lease, self._end_lease = self._end_lease, None
        for view in self._views:
            try:
                view.release()
            except BufferError:
                pass   # something made from it still lives (an array of as_numpy): it goes with that
        self._views = []
        self._data = None
        if end_lease is not None and not end_lease():
            raise LeaseRevoked(
                f"{self.topic}/{self.partition} offsets {int(self.offsets[0])}..{int(self.offsets[-1])}: the "
                f"zero-copy batch was held past its lease while a producer needed the space, so its views may "
                f"have been overwritten while they were used: hold views for less than the consumer's "
                f"view_lease, or poll with copy=True")

    @property
    def released(self) -> bool:
        return self._released

    def _check(self) -> None:
        if self._released:
            raise Closed(f"this batch of {self.topic}/{self.partition} was released: its values can no longer "
                         f"be read")

    def __repr__(self) -> str:
        if not len(self):
            return f"RecordBatch({self.topic!r}, {self.partition}, empty)"
        return (f"RecordBatch({self.topic!r}, {self.partition}, offsets {int(self.offsets[0])}.."
                f"{int(self.offsets[-1])}, {len(self)} records{', zero-copy' if self.zero_copy else ''}"
                f"{', released' if self._released else ''})")


# ---- building batches from reads ----

def from_words(topic: str, partition: int, data: Any, words: Any, n: int, plain: bool, first_offset: int,
               end_lease: Optional[Callable[[], bool]] = None) -> RecordBatch:
    """A batch over data, described by a read's descriptor words (n records): plain
    (timestamp, value length) words with values back to back from first_offset on, or
    SB_DESC_WORDS words each. The words are copied out (their buffer is reused)."""
    np = _numpy.require("Consumer.poll_batch")
    if plain:
        d = np.frombuffer(words, np.int64, count=n * PLAIN_DESC_WORDS).reshape(n, PLAIN_DESC_WORDS)
        value_len = d[:, PLAIN_VALUE_LEN].copy()
        sizes = np.maximum(value_len, 0)
        value_at = np.cumsum(sizes) - sizes
        return RecordBatch(topic, partition, np.arange(first_offset, first_offset + n, dtype=np.int64),
                           d[:, PLAIN_TIMESTAMP].copy(), data, value_at, value_len, end_lease=end_lease, packed=True)
    d = np.frombuffer(words, np.int64, count=n * DESC_WORDS).reshape(n, DESC_WORDS)
    key_len = d[:, DESC_KEY_LEN]
    headers_len = d[:, DESC_HEADERS_LEN]
    keyed = bool((key_len >= 0).any())
    with_headers = bool((headers_len > 0).any())
    return RecordBatch(topic, partition, d[:, DESC_OFFSET].copy(), d[:, DESC_TIMESTAMP].copy(), data,
                       d[:, DESC_VALUE_AT].copy(), d[:, DESC_VALUE_LEN].copy(),
                       d[:, DESC_KEY_AT].copy() if keyed else None, key_len.copy() if keyed else None,
                       d[:, DESC_HEADERS_AT].copy() if with_headers else None,
                       headers_len.copy() if with_headers else None, end_lease=end_lease)


def from_messages(topic: str, partition: int, messages: Sequence[Message]) -> RecordBatch:
    """A batch of Messages already fetched (for iteration) when poll_batch was called."""
    np = _numpy.require("Consumer.poll_batch")
    blobs: List[bytes] = []
    columns: List[List[int]] = [[], [], [], [], [], []]   # key at/len, headers at/len, value at/len
    at = 0
    for m in messages:
        for blob, (at_column, len_column) in ((m.key, (0, 1)), (encode_headers(m.headers) if m.headers else b"",
                                                                 (2, 3)), (m.value, (4, 5))):
            columns[at_column].append(at)
            columns[len_column].append(-1 if blob is None else len(blob))
            if blob:
                blobs.append(bytes(blob))
                at += len(blob)
    key_at, key_len, headers_at, headers_len, value_at, value_len = (np.array(c, dtype=np.int64) for c in columns)
    keyed = bool((key_len >= 0).any())
    with_headers = bool((headers_len > 0).any())
    return RecordBatch(topic, partition, np.array([m.offset for m in messages], dtype=np.int64),
                       np.array([m.timestamp_ns for m in messages], dtype=np.int64), b"".join(blobs),
                       value_at, value_len, key_at if keyed else None, key_len if keyed else None,
                       headers_at if with_headers else None, headers_len if with_headers else None)


class Column(Sequence):
    """A batch's values or keys, built one at a time when indexed."""

    __slots__ = ("_batch", "_at", "_lengths")

    def __init__(self, batch: RecordBatch, at: Optional["numpy.ndarray"], lengths: Optional["numpy.ndarray"]):
        self._batch = batch
        self._at = at            # None: every entry is None (no keys)
        self._lengths = lengths

    def __len__(self) -> int:
        return len(self._batch)

    @overload
    def __getitem__(self, index: int) -> Union[bytes, memoryview, None]: ...

    @overload
    def __getitem__(self, index: slice) -> List[Union[bytes, memoryview, None]]: ...

    def __getitem__(self, index: Union[int, slice]) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"record {index} of a batch of {n}")
        self._batch._check()
        if self._at is None or self._lengths is None:
            return None
        return self._batch._slice(int(self._at[index]), int(self._lengths[index]))

    def __iter__(self) -> Iterator[Union[bytes, memoryview, None]]:
        return (self[i] for i in range(len(self)))
