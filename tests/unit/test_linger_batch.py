"""A lingering batch's bookkeeping (shmbus._linger.Batch): a batch may go out in several
C calls, with other producers' records between them, so each call's records take their
offsets from that call's first offset."""
import struct
import threading

from shmbus import RecordMetadata
from shmbus._linger import RECORD_WORDS, Batch


class _Route:
    topic = "t"   # all a Batch reads of its route


def test_each_c_call_of_a_batch_has_its_own_first_offset():
    batch = Batch(_Route(), 3, threading.Lock(), 1 << 20)
    for i in range(10):
        batch.desc += struct.pack(f"<{RECORD_WORDS}q", 0, -1, 0, 0, 0, 0, 1000 + i)   # timestamp last
    batch.finish(100, 4)    # records 0-3 went to offsets 100..103
    batch.finish(250, 6)    # other producers took 104..249: records 4-9 went to 250..255
    assert [batch.metadata(i).offset for i in range(10)] == [100, 101, 102, 103, 250, 251, 252, 253, 254, 255]
    assert batch.metadata(5) == RecordMetadata("t", 3, 251, 1005)
