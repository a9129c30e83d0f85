"""The control protocol: one JSON object per line over the supervisor's Unix
socket, request {"op": ..., ...} and reply {"ok": true, "result": ...} or
{"ok": false, "error": "<exception name>", "message": ...}. It carries only
metadata and membership; records never pass through it."""
import json
import socket
import struct
import threading
import time
from typing import Any, Collection, Dict, NoReturn, Optional, Tuple

from ._access import user_name
from ._errors import ERRORS_BY_NAME, NotTrusted, ShmbusError, SupervisorUnavailable

MAX_LINE = 1 << 20
_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def error_reply(exc: BaseException) -> Dict[str, Any]:
    return {"ok": False, "error": type(exc).__name__, "message": str(exc)}


def raise_reply(reply: Dict[str, Any]) -> NoReturn:
    cls = ERRORS_BY_NAME.get(str(reply.get("error")), ShmbusError)
    raise cls(reply.get("message", "supervisor error"))


def peer_credentials(sock: socket.socket) -> Tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED:
    the kernel's word, for a server the credentials it had when it called listen)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size)
    pid, uid, gid = _CREDENTIALS.unpack(creds)
    return pid, uid, gid


def _connect(socket_path: str, timeout: float) -> socket.socket:
    """A connected socket. A listen backlog full after a burst makes a non-blocking
    connect fail at once with EAGAIN: that is retried, briefly backing off, until timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() + delay > deadline:
                raise SupervisorUnavailable(f"the supervisor at {socket_path} accepts no connection: its "
                                            f"backlog stayed full for {timeout:g}s") from None
            time.sleep(delay)
            delay = min(2 * delay, 0.05)
        except OSError as e:
            sock.close()
            raise SupervisorUnavailable(f"no supervisor at {socket_path}: {e.strerror or e}") from None


class ControlClient:
    """A connection to the supervisor. It stays open for the client's lifetime:
    the supervisor sees the close when the process dies (a kernel-made liveness
    signal). Thread-safe: one request at a time.

    server_uids: the users the server may run as (its peer credentials are checked at
    connect: NotTrusted otherwise, so nothing is sent to an impersonator)."""

    def __init__(self, socket_path: str, timeout: float = 10.0, server_uids: Optional[Collection[int]] = None):
        self.socket_path = socket_path
        self._lock = threading.Lock()
        self._sock = _connect(socket_path, timeout)
        try:
            self.server_pid, self.server_uid, _ = peer_credentials(self._sock)
        except OSError as e:
            self._sock.close()
            raise SupervisorUnavailable(f"lost the supervisor at {socket_path}: {e}") from None
        if server_uids is not None and self.server_uid not in server_uids:
            self._sock.close()
            expected = " or ".join(user_name(uid) for uid in sorted(server_uids))
            raise NotTrusted(f"the control socket {socket_path} is served by {user_name(self.server_uid)} "
                             f"(pid {self.server_pid}), not by {expected}: refused, it is not this bus's "
                             f"supervisor (someone may be impersonating it)")
        self._reader = self._sock.makefile("rb")

    def call(self, op: str, **args: Any) -> Any:
        request = dict(args, op=op)
        with self._lock:
            try:
                self._sock.sendall(encode(request))
            except OSError as e:
                # A server that refuses us says why in one line, then closes: read it.
                line = self._read_line_quietly()
                if not line:
                    raise SupervisorUnavailable(f"lost the supervisor at {self.socket_path}: {e}") from None
            else:
                try:
                    line = self._reader.readline(MAX_LINE)
                except OSError as e:
                    raise SupervisorUnavailable(f"lost the supervisor at {self.socket_path}: {e}") from None
        if not line:
            raise SupervisorUnavailable(f"the supervisor at {self.socket_path} closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise_reply(reply)
        return reply.get("result")

    def _read_line_quietly(self) -> bytes:
        try:
            return self._reader.readline(MAX_LINE)
        except OSError:
            return b""

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._sock.close()
