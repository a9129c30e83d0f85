"""The supervisor process: the flock that makes it unique, the control socket,
the liveness loop, and a clean stop that leaves nothing in /dev/shm."""
import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time

from .. import _access
from .. import _liveness as liveness
from .._errors import ShmbusError, SupervisorRunning, SupervisorUnavailable
from .._protocol import error_reply
from .archiver import Archiver
from .bridges import BridgeReports
from .groups import GroupCoordinator
from .metrics import ErrorCounter, MetricsEndpoint, snapshot
from .server import ControlServer
from .topics import TopicRegistry
from .unblocker import UNBLOCK_TIMEOUT, Unblocker

REAPER_INTERVAL = 0.25      # a dead producer's claim is finished within about this
OFFSET_SAVE_INTERVAL = 1.0  # memory-only topics: how stale the saved next offset may be
WAITER_GRACE_NS = 1_000_000_000  # a sleeper's lease must be this long over before it is forgotten
LIVENESS_SWEEP_INTERVAL = 5.0    # seconds between sweeps of dead processes' liveness files

# Every part of the supervisor logs here; serve() sends it to stderr, which an
# autostarted supervisor has pointed at <data_dir>/supervisor.log.
logger = logging.getLogger("shmbus.supervisor")


class Supervisor:
    def __init__(self, paths, share_group=None, unblock_timeout=UNBLOCK_TIMEOUT):
        self.paths = paths
        self.share_group = share_group
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.registry = TopicRegistry(paths)
        self.unblocker = Unblocker(self.registry, unblock_timeout)
        self.archiver = Archiver(self)
        # Consumer groups: each control connection gets an id, so its members
        # leave when it closes (the kernel closes it when their process dies).
        self.groups = GroupCoordinator(paths, self.registry, self.lock)
        self._lock_fd = None
        self._server = None
        self.started_ns = time.time_ns()
        self.pid = os.getpid()
        self.bridges = BridgeReports()   # their lag, for stats and /metrics
        self.errors = ErrorCounter()     # what it logged as errors, for stats and /metrics
        logger.addHandler(self.errors)

    # ---- lifecycle ----

    def acquire_lock(self):
        """The bus's flock, in a lock file of this user's (one planted by another user, who
        could hold it forever, is refused); configure() then gives it the bus's mode."""
        _access.check_data_dir(self.paths.data_dir)
        fd = _access.open_file(self.paths.lock_file, os.O_RDWR | os.O_CREAT, _access.owner_trust(os.geteuid()))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SupervisorRunning(
                f"a supervisor already runs for bus {self.paths.bus!r} in {self.paths.data_dir} (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def start(self):
        """Take the lock, open the topics, and serve. Returns once it serves."""
        self.acquire_lock()
        try:
            shared = _access.configure(self.paths.data_dir, self.share_group, bus=self.paths.bus)
            if shared:
                logger.info(f"shared with the members of group {shared!r}")
            crashed = not os.path.exists(self.paths.clean_marker)
            if os.path.exists(self.paths.clean_marker):
                os.unlink(self.paths.clean_marker)
            state = ("new" if not os.path.isdir(self.paths.topics_dir)
                     else "after a crash" if crashed else "after a clean stop")
            logger.info(f"starting ({state}), data dir {self.paths.data_dir}")
            self.registry.load(crashed)
            self.groups.open()
            self._start_server()
            threading.Thread(target=self._liveness_loop, name="liveness", daemon=True).start()
            self.archiver.start()
        except BaseException:
            self._release_lock()
            raise
        logger.info(f"serving on {self.paths.socket_path}")

    def _start_server(self):
        self._server = ControlServer(self.paths.socket_path, self._handle, self.groups.connection_closed,
                                     self._allow_peer, umask=_access.socket_umask())
        self._server.start()
        _access.own_socket(self.paths.socket_path)

    def _allow_peer(self, pid, uid, gid):
        """Who may talk to the supervisor: its own user, root, and when shared, the group's members."""
        if _access.peer_allowed(uid, gid):
            return None
        return f"{_access.user_name(uid)} may not use bus {self.paths.bus!r}: {_access.describe_access()}"

    def wait(self):
        while not self.stopping.wait(0.5):
            pass

    def stop(self):
        """Clean stop: no more requests, rings removed, marker written, lock released."""
        self.stopping.set()
        if self._server is not None:
            self._server.stop()
        self.archiver.join(timeout=5.0)
        with self.lock:
            # No new appends, claims in flight finished, everything archived and
            # fsynced: only then may the rings go.
            self.registry.quiesce()
            self.archiver.drain()
            self.registry.close()
            self.groups.close()
            liveness.sweep_dead()
        with os.fdopen(_access.create_file(self.paths.clean_marker), "w") as f:
            f.write(f"{time.time_ns()}\n")
        logger.info("stopped cleanly")
        logger.removeHandler(self.errors)
        self._release_lock()

    def _release_lock(self):
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- liveness ----

    def _liveness_loop(self):
        last_save = last_sweep = time.monotonic()
        while not self.stopping.wait(REAPER_INTERVAL):
            try:
                with self.lock:
                    # Dead producers reaped, stalled ones revoked (their partition moved on).
                    self.unblocker.check()
                    for topic in self.registry.topics.values():
                        for ring in topic.rings:
                            # Waiters killed in their sleep: forget them once their lease is over.
                            ring.expire_waiters(WAITER_GRACE_NS)
                    if time.monotonic() - last_sweep >= LIVENESS_SWEEP_INTERVAL:
                        liveness.sweep_dead()   # liveness files of processes killed outright
                        last_sweep = time.monotonic()
                    if time.monotonic() - last_save >= OFFSET_SAVE_INTERVAL:
                        self.registry.save_offsets()
                        last_save = time.monotonic()
            except Exception as e:  # keep watching; report what broke
                logger.exception(f"liveness loop error: {e!r}")
            try:
                self.groups.check_liveness()  # group members that died or stopped polling
            except Exception as e:
                logger.exception(f"group liveness error: {e!r}")

    # ---- the control protocol ----

    def _handle(self, line, connection):
        """One request line from a connection: the reply to send back."""
        if self.stopping.is_set():  # the client reconnects, and finds the next supervisor
            return error_reply(SupervisorUnavailable("the supervisor is stopping"))
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("a request is a JSON object with an \"op\" string")
            op = request.pop("op")
            handler = getattr(self, f"op_{op}", None) or self.groups.handler(op, connection)
            if handler is None:
                raise ShmbusError(f"unknown operation {op!r}")
            reply = {"ok": True, "result": handler(**request)}
        except Exception as e:  # bad arguments included: the client gets the error, by name
            reply = error_reply(e)
        if reply.get("result") == "stopping":
            threading.Thread(target=self._stop_soon, daemon=True).start()
        return reply

    def _stop_soon(self):
        time.sleep(0.05)
        self.stopping.set()

    def op_ping(self):
        return {"pid": os.getpid(), "bus": self.paths.bus, "data_dir": self.paths.data_dir,
                "started_ns": self.started_ns}

    def op_create_topic(self, name, partitions=1, ring_bytes=64 << 20, durable=True,
                        retention_bytes=None, retention_ms=None, segment_bytes=None):
        with self.lock:
            topic = self.registry.create(name, partitions, ring_bytes, durable, retention_bytes,
                                         retention_ms, segment_bytes)
            return self._topic_reply(topic)

    def op_delete_topic(self, name):
        with self.lock:
            self.registry.delete(name)
        return None

    def op_topics(self):
        with self.lock:
            return {name: topic.info._asdict() for name, topic in self.registry.topics.items()}

    def op_broken_topics(self):
        """{name: why} of the topics whose metadata cannot be read (kept, not served)."""
        with self.lock:
            return dict(self.registry.broken)

    def op_topic(self, name):
        with self.lock:
            return self._topic_reply(self.registry.get(name))

    def op_describe_topic(self, name):
        with self.lock:
            return self.registry.describe(name)

    def op_stop(self):
        return "stopping"

    def op_snapshot(self):
        """Every topic's and group's figures, the bridges' lag, uptime and errors (`shmbus stats`)."""
        return snapshot(self)

    def op_bridge_report(self, name, lag, final=False):
        """A bridge's lag (see bridges.py); final: it stops, forget it now."""
        self.bridges.report(name, lag, final)

    @staticmethod
    def _topic_reply(topic):
        return {"info": topic.info._asdict(), "rings": topic.ring_names()}


def serve(paths, share_group=None, unblock_timeout=UNBLOCK_TIMEOUT, metrics_address=None):
    """Run a supervisor in this process until SIGTERM/SIGINT or `shmbus stop`.
    share_group: also let the members of this Unix group use the bus (remembered).
    unblock_timeout: seconds a live producer may hold a claim before it is revoked.
    metrics_address: (host, port) to serve Prometheus /metrics on (port 0: any free one)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s shmbus[%(process)d] {paths.bus}: %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    supervisor = Supervisor(paths, share_group=share_group, unblock_timeout=unblock_timeout)
    supervisor.start()
    endpoint = None
    try:
        if metrics_address is not None:
            endpoint = MetricsEndpoint(supervisor, *metrics_address)
            endpoint.start()
    except BaseException:
        supervisor.stop()
        raise
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    try:
        supervisor.wait()
    finally:
        if endpoint is not None:
            endpoint.stop()
        supervisor.stop()
