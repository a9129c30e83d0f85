"""The bridge commits a shmbus offset only when Kafka holds every record before it
(shmbus/bridge/_acks.py): out-of-order acknowledgements, records the loop guard keeps
back, a record that can never go, and a rewind."""
import random

import shmbus.bridge
from shmbus.bridge._acks import PartitionAcks


def test_in_order_acknowledgements_move_the_commit_point():
    acks = PartitionAcks(10)
    for offset in range(10, 15):
        acks.sent(offset)
    assert acks.commit_point == 10 and acks.pending == 5
    acks.delivered(10)
    acks.delivered(11)
    assert acks.commit_point == 12 and acks.pending == 3


def test_an_acknowledgement_out_of_order_waits_for_those_before_it():
    acks = PartitionAcks(0)
    for offset in (0, 1, 2, 5, 6):   # 3 and 4: a gap (aborted records)
        acks.sent(offset)
    acks.delivered(2)
    acks.delivered(6)
    assert acks.commit_point == 0
    acks.delivered(0)
    assert acks.commit_point == 0 + 1
    acks.delivered(1)
    assert acks.commit_point == 3
    acks.delivered(5)
    assert acks.commit_point == 7 and acks.pending == 0


def test_random_order_never_commits_past_an_unacknowledged_record():
    rng = random.Random(3)
    acks = PartitionAcks(0)
    offsets = list(range(500))
    for offset in offsets:
        acks.sent(offset)
    rng.shuffle(offsets)
    done = set()
    for offset in offsets:
        acks.delivered(offset)
        done.add(offset)
        assert all(o in done for o in range(acks.commit_point))
        assert acks.commit_point not in done
    assert acks.commit_point == 500


def test_records_kept_back_count_as_done_in_their_turn():
    acks = PartitionAcks(0)
    acks.passed(0)
    assert acks.commit_point == 1
    acks.sent(1)
    acks.passed(2)
    assert acks.commit_point == 1
    acks.delivered(1)
    assert acks.commit_point == 3


def test_a_record_that_cannot_go_holds_the_commit_point_for_good():
    acks = PartitionAcks(0)
    for offset in range(4):
        acks.sent(offset)
    acks.stop(2, "too large")
    for offset in (0, 1, 3):
        acks.delivered(offset)
    assert acks.commit_point == 2 and acks.stopped and acks.error_offset == 2


def test_a_rewind_sends_again_from_the_commit_point():
    acks = PartitionAcks(0)
    for offset in range(5):
        acks.sent(offset)
    acks.delivered(0)
    epoch = acks.epoch
    assert acks.rewind() == 1
    assert acks.epoch == epoch + 1 and acks.pending == 0


def test_the_bridge_package_exports():
    assert set(shmbus.bridge.__all__) == {"Bridge", "BridgeConfig", "BridgeConfigError", "MARKER_HEADER"}
    assert shmbus.bridge.MARKER_HEADER == "shmbus.bridge"
    assert issubclass(shmbus.bridge.BridgeConfigError, (shmbus.ShmbusError, ValueError))
