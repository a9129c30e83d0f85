"""Which shmbus offsets of one partition Kafka has acknowledged, and so how far the bridge
may commit: the offset after the longest acknowledged run from the last commit. A record
acknowledged out of order (Kafka acknowledges per Kafka partition, and one shmbus
partition may feed several) waits until everything before it is acknowledged too."""
from collections import deque
from typing import Deque, Optional, Set


class PartitionAcks:
    """One shmbus partition's records in flight to Kafka, in the order they were read.

    commit_point: the offset the bridge may commit (every record before it is in Kafka,
    or was one it must not send: the loop guard's). epoch: bumped by rewind(), so the
    acknowledgements of records sent before it are told apart and ignored."""

    __slots__ = ("in_flight", "acked", "commit_point", "committed", "epoch", "error", "error_offset")

    def __init__(self, start: int = 0):
        self.in_flight: Deque[int] = deque()
        self.acked: Set[int] = set()
        self.commit_point = start
        self.committed: Optional[int] = None   # what the group holds, as far as this bridge committed it
        self.epoch = 0
        self.error: Optional[str] = None        # the partition stopped: why
        self.error_offset: Optional[int] = None

    def sent(self, offset: int) -> None:
        self.in_flight.append(offset)

    def passed(self, offset: int) -> None:
        """A record read and deliberately not sent: done, once those before it are."""
        if self.in_flight:
            self.in_flight.append(offset)
            self.delivered(offset)
        else:
            self.commit_point = offset + 1

    def delivered(self, offset: int) -> None:
        in_flight = self.in_flight
        if in_flight and in_flight[0] == offset:   # the usual case: in order
            in_flight.popleft()
            self.commit_point = offset + 1
        else:
            self.acked.add(offset)
        acked = self.acked
        while in_flight and in_flight[0] in acked:
            done = in_flight.popleft()
            acked.discard(done)
            self.commit_point = done + 1

    def stop(self, offset: int, why: str) -> None:
        """The record at offset can never be delivered: nothing from it on is sent or
        committed (later acknowledgements of earlier records still count)."""
        if self.error is None:
            self.error, self.error_offset = why, offset
        self.acked.discard(offset)

    def rewind(self) -> int:
        """Forget what is in flight (to be sent again from the commit point); returns it."""
        self.in_flight.clear()
        self.acked.clear()
        self.epoch += 1
        return self.commit_point

    @property
    def stopped(self) -> bool:
        return self.error is not None

    @property
    def pending(self) -> int:
        return len(self.in_flight)
