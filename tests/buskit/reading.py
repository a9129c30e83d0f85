"""Reading from a test: exactly N records, a consumer thread that checks every value
as it arrives, and CPU time."""
import threading
import time

from .values import check_value


def read_exact(consumer, count, timeout=10.0):
    """Exactly `count` records from consumer (fails if fewer arrive in time).
    Reads no further than asked, so the caller can check what comes next."""
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        messages.extend(consumer.poll_many(count - len(messages), timeout=0.2))
    assert len(messages) == count, f"got {len(messages)} of {count} records within {timeout}s"
    return messages


def cpu_seconds(proc):
    times = proc.cpu_times()
    return times.user + times.system


class Collector(threading.Thread):
    """A consumer reading one partition on a thread of the test process, so the
    test can ask "has a record from X arrived since T?" while it goes on killing
    things. Every value is checked as it arrives."""

    def __init__(self, bus, topic):
        super().__init__(name=f"collector-{topic}", daemon=True)
        self.consumer = bus.consumer(topic, auto_offset_reset="earliest")
        for tp in self.consumer.assignment():
            self.consumer.position(tp)   # start at the earliest offset now, not later
        self.records = []                # (partition, offset, tag, seq, timestamp_ns)
        self.garbage = []
        self.counts = {}                 # tag -> records received
        self.latest = {}                 # first letter of the tag -> newest timestamp_ns received
        self.error = None
        self.missed = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()

    def run(self):
        try:
            while not self._stopping.is_set():
                batch = self.consumer.poll_many(2000, timeout=0.1)
                with self._cond:
                    for m in batch:
                        try:
                            tag, seq = check_value(m.value)
                        except ValueError as e:
                            self.garbage.append(f"{m.partition}@{m.offset}: {e}")
                            continue
                        self.records.append((m.partition, m.offset, tag, seq, m.timestamp_ns))
                        self.counts[tag] = self.counts.get(tag, 0) + 1
                        kind = tag[0]
                        self.latest[kind] = max(self.latest.get(kind, 0), m.timestamp_ns)
                    self._cond.notify_all()
        except BaseException as e:  # reported by the test, not lost on the thread
            self.error = e
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, predicate, timeout):
        """Wait until predicate(self) holds (under the lock); returns whether it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error is not None:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self):
        """Stop reading (again: a no-op); afterwards self.missed holds what the
        consumer missed. Raises what the reading thread raised, if anything."""
        if self.missed is None:
            self._stopping.set()
            self.join(10)
            self.missed = self.consumer.missed()
            self.consumer.close()
        if self.error is not None:
            raise self.error
