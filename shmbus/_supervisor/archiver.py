"""The archiver: copies committed frames from every durable ring into its
partition's segment files, fsyncs by policy (and at once when a producer's
flush() asks), and moves the ring's archived position, which is what lets
producers reuse ring space. One thread for all partitions: it sleeps on the
rings' futex words, like a consumer, so an idle bus costs nothing."""
import logging
import threading
import time

from .._backend import RING_ARCHIVE_ERROR, Cursor, WaitSet

FSYNC_INTERVAL = 0.1        # seconds: what a host crash can lose at most
FSYNC_BYTES = 64 << 20      # fsync at least this often under heavy load
RETENTION_INTERVAL = 5.0    # seconds between retention sweeps
ERROR_RETRY = 1.0           # seconds between retries after a write error
STEP_BYTES = 64 << 20       # most one partition archives before the next gets a turn
BATCH_BYTES = 64 << 10      # below this per round (a trickle), the archiver naps 1 ms to batch

logger = logging.getLogger("shmbus.supervisor")


class Archiver:
    def __init__(self, supervisor, fsync_interval=FSYNC_INTERVAL):
        self.supervisor = supervisor
        self.fsync_interval = fsync_interval
        self.thread = threading.Thread(target=self._run, name="archiver", daemon=True)
        self._last_retention = 0.0

    def start(self):
        self.thread.start()

    def join(self, timeout=None):
        self.thread.join(timeout)

    def _partitions(self):
        registry = self.supervisor.registry
        return [(topic, p) for topic in registry.topics.values() if topic.info.durable
                for p in range(topic.info.partitions)]

    def _run(self):
        sup = self.supervisor
        while not sup.stopping.is_set():
            written = 0
            try:
                with sup.lock:
                    sup.registry.close_dropped()  # safe: we are not waiting on them now
                    parts = self._partitions()
                    for topic, p in parts:
                        written += self.step(topic, p)
                    if time.monotonic() - self._last_retention > RETENTION_INTERVAL:
                        self._last_retention = time.monotonic()
                        for topic in sup.registry.topics.values():
                            sup.registry.enforce_retention(topic)
            except Exception as e:  # keep archiving the other partitions; report what broke
                logger.exception(f"archiver error: {e!r}")
                time.sleep(ERROR_RETRY)
            if written >= BATCH_BYTES:
                continue  # a backlog: keep going
            if written:
                # A trickle: let a little pile up, one wake-up per millisecond rather
                # than a futex wake per record for the producers.
                time.sleep(0.001)
            else:
                with sup.lock:
                    waits = self._wait_arrays(self._partitions())
                self._sleep(*waits)

    def step(self, topic, p, force_sync=False):
        """Archive what partition p's ring holds beyond the disk -- first what rings it
        moved on from hold (oldest first) --; fsync when due. Returns bytes written (1
        at least when it finished a retired ring, so a drain goes on to the next)."""
        writer = topic.logs[p]
        source = topic.archive_source(p)
        ring = source.ring if source is not None else topic.rings[p]
        now = time.monotonic()
        if writer.error is not None and now - writer.error_at < ERROR_RETRY:
            return 0
        try:
            written = 0
            synced = writer.synced_position  # only we move it: no need to read the ring
            while written < STEP_BYTES:
                more = writer.archive(ring)
                if not more:
                    break
                written += more
                # Hand the space back at once: a producer may be waiting for it.
                ring.set_archived(writer.state.position, synced)
            finishing = source is not None and writer.state.position >= source.end
            due = (writer.unsynced and (force_sync or finishing
                                        or now - writer.last_sync >= self.fsync_interval
                                        or writer.unsynced >= FSYNC_BYTES
                                        or ring.sync_requested() > synced))
            if due:
                writer.sync()
            if due or not writer.unsynced:
                writer.synced_position = writer.state.position
                ring.set_archived(writer.state.position, writer.synced_position)
            if finishing and writer.synced_position >= source.end:
                # All of the retired ring is on disk and fsynced: go on with the ring
                # after it, from its start.
                source.archived = True
                writer.state.position = writer.synced_position = 0
                written = written or 1
            if writer.error is not None:
                logger.info(f"{topic.info.name}/{p}: archiving again after: {writer.error}")
                writer.error = None
                ring.clear_flag(RING_ARCHIVE_ERROR)
            return written
        except OSError as e:
            if writer.error is None:
                logger.error(f"{topic.info.name}/{p}: cannot archive: {e}; producers will block "
                             f"when the ring fills, and archiving resumes when it can")
                ring.set_flag(RING_ARCHIVE_ERROR)
            writer.error = str(e)
            writer.error_at = now
            return 0

    def _wait_arrays(self, parts):
        """Rings and cursors (at the archived position) to sleep on, built under the lock;
        the rings stay mapped until this thread closes them (close_dropped)."""
        cursors = []
        for topic, p in parts:
            source = topic.archive_source(p)
            ring = source.ring if source is not None else topic.rings[p]
            cursors.append(Cursor(ring, topic.logs[p].state.position))
        unsynced = any(topic.logs[p].unsynced for topic, p in parts)
        return cursors, self.fsync_interval if unsynced else 0.5

    def _sleep(self, cursors, timeout):
        """Sleep until a ring has a new frame, a flush request or a deletion, or the
        fsync interval passes."""
        if not cursors or len(cursors) > WaitSet.MAX_RINGS:
            time.sleep(min(timeout, 0.01) if cursors else 0.2)
            return
        WaitSet(cursors).wait(int(timeout * 1e9), 0, False)

    def drain(self):
        """Archive and fsync everything the rings hold (a clean stop)."""
        for topic, p in self._partitions():
            while self.step(topic, p, force_sync=True):
                pass
