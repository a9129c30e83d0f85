"""The control socket's server: one selector thread for every connection.

An idle connection costs a file descriptor and a few hundred bytes, never a thread:
clients keep theirs open for their whole life (its close is how the supervisor learns
that a group member died), so a thread per connection let a burst of idle ones make
thousands of threads. The selector thread reads request lines and hands each complete
one to the supervisor in arrival order (the handler takes the supervisor's lock, as
before); replies are written without blocking, and a client that does not read its
replies stops being read until it does.

Bounded against abuse: at most max_connections open (beyond that a connection gets one
error line and is closed, and the refusal is logged once), a request line longer than
MAX_LINE closes its connection, and so does a partial line left unfinished for
partial_timeout seconds. A complete, idle connection is never timed out. A peer that
`allow` refuses (its credentials come from SO_PEERCRED) gets one error line and is closed.
"""
import errno
import logging
import os
import resource
import selectors
import socket
import threading
import time
from typing import Callable, Dict, Optional, Set

from .._errors import NotTrusted, SupervisorUnavailable
from .._protocol import MAX_LINE, encode, error_reply, peer_credentials

BACKLOG = 512                 # a burst of connects waits in the kernel, not in EAGAIN
MAX_CONNECTIONS = 4096
PARTIAL_LINE_TIMEOUT = 10.0   # seconds a request may take to arrive whole
MAX_PENDING_OUTPUT = 4 << 20  # unread replies beyond which a connection's requests wait
READ_SIZE = 64 << 10
FD_RESERVE = 256              # descriptors kept for rings, segments and the rest

logger = logging.getLogger("shmbus.supervisor")

Handler = Callable[[bytes, int], dict]


class _Connection:
    __slots__ = ("sock", "id", "inbuf", "outbuf", "partial_since", "reading", "closing")

    def __init__(self, sock: socket.socket, connection_id: int):
        self.sock = sock
        self.id = connection_id
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.partial_since: Optional[float] = None   # when the unfinished line in inbuf began
        self.reading = True       # False while its unread replies are over MAX_PENDING_OUTPUT
        self.closing = False      # close once outbuf is written


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards wanted; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class ControlServer:
    """Serves the control protocol on a Unix socket at path.

    handle(line, connection_id) -> reply: one request, in order per connection.
    closed(connection_id): the connection is gone (not called at stop()).
    allow(pid, uid, gid) -> None if that peer may connect, else the reason it may not."""

    def __init__(self, path: str, handle: Handler, closed: Callable[[int], None],
                 allow: Callable[[int, int, int], Optional[str]], umask: int = 0o177,
                 max_connections: int = MAX_CONNECTIONS, partial_timeout: float = PARTIAL_LINE_TIMEOUT,
                 backlog: int = BACKLOG):
        self.path = path
        self.handle = handle
        self.closed = closed
        self.allow = allow
        self.umask = umask
        limit = raise_fd_limit(max_connections + FD_RESERVE)
        self.max_connections = max(1, min(max_connections, limit - FD_RESERVE))
        self.partial_timeout = partial_timeout
        self.backlog = backlog
        self._selector = selectors.DefaultSelector()
        self._listener: Optional[socket.socket] = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._connections: Dict[int, _Connection] = {}
        self._partial: Set[_Connection] = set()
        self._next_id = 0
        self._stopping = False
        self._at_cap_logged = False
        self._refused_uids: Set[int] = set()
        self._thread = threading.Thread(target=self._run, name="control", daemon=True)

    # ---- lifecycle ----

    def start(self) -> None:
        """Bind (replacing a dead supervisor's socket: the caller holds the bus's lock) and serve."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(self.umask)   # the socket's mode is made at bind
        try:
            listener.bind(self.path)
        finally:
            os.umask(old_umask)
        listener.listen(self.backlog)
        listener.setblocking(False)
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "listener")
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()

    def stop(self) -> None:
        """Stop serving: no more connections or requests; every connection is closed."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(10.0)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
        for conn in list(self._connections.values()):
            self._close(conn, notify=False)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # ---- the loop ----

    def _run(self) -> None:
        while not self._stopping:
            try:
                events = self._selector.select(self._select_timeout())
                for key, mask in events:
                    if key.data == "listener":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        conn = key.data
                        if mask & selectors.EVENT_WRITE:
                            self._flush(conn)
                        if mask & selectors.EVENT_READ and conn.id in self._connections:
                            self._read(conn)
                self._expire_partial_lines()
            except Exception as e:  # keep serving; report what broke
                logger.exception(f"control server error: {e!r}")
                time.sleep(0.05)

    def _select_timeout(self) -> Optional[float]:
        if not self._partial:
            return None
        first = min(conn.partial_since or 0.0 for conn in self._partial)
        return max(0.0, first + self.partial_timeout - time.monotonic()) + 0.01

    def _drain_wake(self) -> None:
        try:
            self._wake_r.recv(4096)
        except OSError:
            pass

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors, despite the cap: let the backlog wait a moment.
                    logger.error(f"cannot accept control connections: {e}")
                    time.sleep(0.05)
                return
            sock.setblocking(False)
            if len(self._connections) >= self.max_connections:
                if not self._at_cap_logged:
                    self._at_cap_logged = True
                    logger.warning(f"control socket: {self.max_connections} connections are open, the most "
                                   f"it serves: refusing more until some close")
                self._refuse(sock, SupervisorUnavailable(
                    f"the supervisor serves its maximum of {self.max_connections} control connections: refused"))
                continue
            try:
                pid, uid, gid = peer_credentials(sock)
            except OSError:
                sock.close()
                continue
            why = self.allow(pid, uid, gid)
            if why is not None:
                if uid not in self._refused_uids and len(self._refused_uids) < 1024:
                    self._refused_uids.add(uid)
                    logger.warning(f"refused a control connection (pid {pid}): {why}")
                self._refuse(sock, NotTrusted(why))
                continue
            self._next_id += 1
            conn = _Connection(sock, self._next_id)
            self._connections[conn.id] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    @staticmethod
    def _refuse(sock: socket.socket, error: Exception) -> None:
        """One error line, then close (the client reads the line even after the close)."""
        try:
            sock.send(encode(error_reply(error)))
        except OSError:
            pass
        sock.close()

    def _read(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        conn.inbuf += data
        self._process(conn)

    def _process(self, conn: _Connection) -> None:
        """Serve every complete line in conn's buffer, in order, then write the replies."""
        served = False
        while conn.reading and not conn.closing:
            end = conn.inbuf.find(b"\n")
            if end < 0:
                break
            line = bytes(conn.inbuf[:end + 1])
            del conn.inbuf[:end + 1]
            served = True
            conn.outbuf += encode(self.handle(line, conn.id))
            if len(conn.outbuf) > MAX_PENDING_OUTPUT:
                conn.reading = False
        if len(conn.inbuf) > MAX_LINE and not conn.closing:
            conn.outbuf += encode(error_reply(ValueError(f"a request line longer than {MAX_LINE} bytes")))
            conn.closing = True
            conn.inbuf.clear()
        if not conn.inbuf:
            conn.partial_since = None
            self._partial.discard(conn)
        elif served or conn.partial_since is None:
            conn.partial_since = time.monotonic()   # what is left began arriving now
            self._partial.add(conn)
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del conn.outbuf[:sent]
        if not conn.outbuf and conn.closing:
            self._close(conn)
            return
        if not conn.reading and len(conn.outbuf) <= MAX_PENDING_OUTPUT // 2:
            conn.reading = True
            if b"\n" in conn.inbuf:
                self._process(conn)   # it reads its replies again: serve what waited
                return
        events = (selectors.EVENT_READ if conn.reading and not conn.closing else 0) | \
                 (selectors.EVENT_WRITE if conn.outbuf else 0)
        key = self._selector.get_key(conn.sock)
        if events == 0:
            events = selectors.EVENT_WRITE   # nothing to read while closing: wait to write
        if key.events != events:
            self._selector.modify(conn.sock, events, conn)

    def _expire_partial_lines(self) -> None:
        if not self._partial:
            return
        now = time.monotonic()
        for conn in [c for c in self._partial if now - (c.partial_since or now) > self.partial_timeout]:
            self._close(conn)

    def _close(self, conn: _Connection, notify: bool = True) -> None:
        if self._connections.pop(conn.id, None) is None:
            return
        self._partial.discard(conn)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if len(self._connections) < self.max_connections:
            self._at_cap_logged = False
        if notify:
            self.closed(conn.id)
