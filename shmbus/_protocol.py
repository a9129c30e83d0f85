"""The control protocol: one JSON object per line over the supervisor's Unix
socket, request {"op": ..., ...} and reply {"ok": true, "result": ...} or
{"ok": false, "error": "<exception name>", "message": ...}. It carries only
metadata and membership; records never pass through it."""
import json
import socket
import threading
from typing import Any, Dict, NoReturn

from ._errors import ERRORS_BY_NAME, ShmbusError, SupervisorUnavailable

MAX_LINE = 1 << 20


def encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def error_reply(exc: BaseException) -> Dict[str, Any]:
    return {"ok": False, "error": type(exc).__name__, "message": str(exc)}


def raise_reply(reply: Dict[str, Any]) -> NoReturn:
    cls = ERRORS_BY_NAME.get(str(reply.get("error")), ShmbusError)
    raise cls(reply.get("message", "supervisor error"))


class ControlClient:
    """A connection to the supervisor. It stays open for the client's lifetime:
    the supervisor sees the close when the process dies (a kernel-made liveness
    signal). Thread-safe: one request at a time."""

    def __init__(self, socket_path: str, timeout: float = 10.0):
        self.socket_path = socket_path
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(socket_path)
        except OSError as e:
            self._sock.close()
            raise SupervisorUnavailable(f"no supervisor at {socket_path}: {e.strerror or e}") from None
        self._reader = self._sock.makefile("rb")

    def call(self, op: str, **args: Any) -> Any:
        request = dict(args, op=op)
        with self._lock:
            try:
                self._sock.sendall(encode(request))
                line = self._reader.readline(MAX_LINE)
            except OSError as e:
                raise SupervisorUnavailable(f"lost the supervisor at {self.socket_path}: {e}") from None
        if not line:
            raise SupervisorUnavailable(f"the supervisor at {self.socket_path} closed the connection")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise_reply(reply)
        return reply.get("result")

    def close(self) -> None:
        try:
            self._reader.close()
        finally:
            self._sock.close()
