"""The supervisor process: the flock that makes it unique, the control socket,
the liveness loop, and a clean stop that leaves nothing in /dev/shm."""
import fcntl
import itertools
import json
import logging
import os
import signal
import socketserver
import sys
import threading
import time

from .. import _access
from .._errors import ShmbusError, SupervisorRunning
from .._protocol import MAX_LINE, encode, error_reply
from .archiver import Archiver
from .groups import GroupCoordinator
from .topics import TopicRegistry

REAPER_INTERVAL = 0.25      # a dead producer's claim is finished within about this
OFFSET_SAVE_INTERVAL = 1.0  # memory-only topics: how stale the saved next offset may be
WAITER_GRACE_NS = 1_000_000_000  # a sleeper's lease must be this long over before it is forgotten

# Every part of the supervisor logs here; serve() sends it to stderr, which an
# autostarted supervisor has pointed at <data_dir>/supervisor.log.
logger = logging.getLogger("shmbus.supervisor")


class Supervisor:
    def __init__(self, paths, share_group=None):
        self.paths = paths
        self.share_group = share_group
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.registry = TopicRegistry(paths)
        self.archiver = Archiver(self)
        # Consumer groups: each control connection gets an id, so its members
        # leave when it closes (the kernel closes it when their process dies).
        self.groups = GroupCoordinator(paths, self.registry, self.lock)
        self._connection_ids = itertools.count(1)
        self._lock_fd = None
        self._server = None
        self.started_ns = time.time_ns()

    # ---- lifecycle ----

    def acquire_lock(self):
        os.makedirs(self.paths.data_dir, mode=0o700, exist_ok=True)
        fd = os.open(self.paths.lock_file, os.O_RDWR | os.O_CREAT, 0o600)  # own() widens it if shared
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
            shared = _access.configure(self.paths.data_dir, self.share_group)
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
        path = self.paths.socket_path
        try:
            os.unlink(path)  # a stale socket of a dead supervisor; we hold the lock
        except FileNotFoundError:
            pass
        supervisor = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                connection = next(supervisor._connection_ids)
                try:
                    supervisor._serve_connection(self.rfile, self.wfile, connection)
                finally:
                    supervisor.groups.connection_closed(connection)

        class Server(socketserver.ThreadingUnixStreamServer):
            daemon_threads = True

        old_umask = os.umask(0o177)
        try:
            self._server = Server(path, Handler)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        _access.own(path)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="control", daemon=True).start()

    def wait(self):
        while not self.stopping.wait(0.5):
            pass

    def stop(self):
        """Clean stop: no more requests, rings removed, marker written, lock released."""
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            try:
                os.unlink(self.paths.socket_path)
            except FileNotFoundError:
                pass
        self.archiver.join(timeout=5.0)
        with self.lock:
            # No new appends, claims in flight finished, everything archived and
            # fsynced: only then may the rings go.
            self.registry.quiesce()
            self.archiver.drain()
            self.registry.close()
            self.groups.close()
        with open(self.paths.clean_marker, "w") as f:
            f.write(f"{time.time_ns()}\n")
        logger.info("stopped cleanly")
        self._release_lock()

    def _release_lock(self):
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- liveness ----

    def _liveness_loop(self):
        last_save = time.monotonic()
        while not self.stopping.wait(REAPER_INTERVAL):
            try:
                with self.lock:
                    for topic in self.registry.topics.values():
                        for p, ring in enumerate(topic.rings):
                            reaped = ring.reap_dead(topic.reaper_slots[p])
                            if reaped:
                                logger.info(f"{topic.info.name}/{p}: freed {reaped} dead producer slot(s)")
                            # Waiters killed in their sleep: forget them once their lease is over.
                            ring.expire_waiters(WAITER_GRACE_NS)
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

    def _serve_connection(self, rfile, wfile, connection=None):
        while not self.stopping.is_set():
            line = rfile.readline(MAX_LINE)
            if not line:
                return
            try:
                request = json.loads(line)
                op = request.pop("op")
                handler = getattr(self, f"op_{op}", None) or self.groups.handler(op, connection)
                if handler is None:
                    raise ShmbusError(f"unknown operation {op!r}")
                reply = {"ok": True, "result": handler(**request)}
            except Exception as e:  # bad arguments included: the client gets the error, by name
                reply = error_reply(e)
            try:
                wfile.write(encode(reply))
                wfile.flush()
            except OSError:
                return
            if reply.get("result") == "stopping":
                threading.Thread(target=self._stop_soon, daemon=True).start()

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

    @staticmethod
    def _topic_reply(topic):
        return {"info": topic.info._asdict(), "rings": topic.ring_names()}


def serve(paths, share_group=None):
    """Run a supervisor in this process until SIGTERM/SIGINT or `shmbus stop`.
    share_group: also let the members of this Unix group use the bus (remembered)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s shmbus[%(process)d] {paths.bus}: %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    supervisor = Supervisor(paths, share_group=share_group)
    supervisor.start()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: supervisor.stopping.set())
    try:
        supervisor.wait()
    finally:
        supervisor.stop()
