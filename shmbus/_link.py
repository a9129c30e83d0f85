"""A client's link to its bus's supervisor: the control connection, and starting a
supervisor on demand (autostart) when none answers.

The connection stays open for the client's lifetime: the supervisor sees it close
when the process dies (the kernel's liveness signal). Records never pass through it.
"""
import fcntl
import os
import stat
import subprocess
import sys
import threading
import time
from typing import Any, Optional, Set

from . import _access
from ._config import BusPaths
from ._errors import Closed, ShmbusError, SupervisorUnavailable, Timeout
from ._protocol import ControlClient

AUTOSTART_TIMEOUT = 15.0


def start_supervisor(paths: BusPaths) -> "subprocess.Popen[bytes]":
    """Start `shmbus serve` detached: its own session, no terminal, log in the data dir
    (0600, or 0660 when the bus is shared: it is the bus's file like any other)."""
    os.makedirs(paths.data_dir, mode=0o700, exist_ok=True)
    mine = _access.owner_trust(os.geteuid())
    mode = 0o660 if _access.recorded_share_group(paths.data_dir, mine) else 0o600
    log = _access.open_file(paths.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mine, create_mode=mode)
    try:
        if stat.S_IMODE(os.fstat(log).st_mode) != mode:
            os.fchmod(log, mode)  # made by the umask, or by an older version: 0644
        return subprocess.Popen(
            [sys.executable, "-m", "shmbus", "serve", "--bus", paths.bus, "--data-dir", paths.data_dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True,
            # Not the caller's directory: `-m` puts it first on sys.path, and a source
            # checkout there (no compiled core) would shadow the installed package.
            cwd=paths.data_dir,
        )
    finally:
        os.close(log)


def wait_for_supervisor_exit(paths: BusPaths, timeout: float) -> None:
    """A supervisor holds its lock until it has removed everything: wait for the lock."""
    deadline = time.monotonic() + timeout
    fd = os.open(paths.lock_file, os.O_RDWR)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Timeout(f"the supervisor of bus {paths.bus!r} did not stop within {timeout}s") from None
                time.sleep(0.02)
    finally:
        os.close(fd)


class SupervisorLink:
    """The control connection of one Bus, shared by its producers, consumers and group
    members. Thread-safe: one request at a time.

    The supervisor at the other end must run as the data dir's owner (or root): its peer
    credentials are checked at every connect. `server_uid` is its user; the rings and
    files a client maps must be that user's."""

    def __init__(self, paths: BusPaths, autostart: bool = True, timeout: float = AUTOSTART_TIMEOUT):
        self.paths = paths
        self.autostart = autostart
        self.timeout = timeout
        self._client: Optional[ControlClient] = None
        self._lock = threading.Lock()
        self._closed = False
        self._last_check = 0.0
        self.server_uid = os.geteuid()
        self._connect()

    def _server_uids(self) -> Set[int]:
        owner = _access.dir_owner(self.paths.data_dir)
        return {os.geteuid() if owner is None else owner, 0}

    def _open_client(self) -> ControlClient:
        """A connection whose server is to be trusted (NotTrusted, raised, if it is not)."""
        client = ControlClient(self.paths.socket_path, server_uids=self._server_uids())
        self.server_uid = client.server_uid
        return client

    def _connect(self) -> None:
        try:
            self._client = self._open_client()
            return
        except SupervisorUnavailable:
            if not self.autostart:
                raise
        process = start_supervisor(self.paths)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                self._client = self._open_client()
                return
            except SupervisorUnavailable:
                pass
            if process.poll() is not None:
                # It exited: it lost the race for the lock to another one that is
                # starting (then we connect to that one), or it died: start another.
                time.sleep(0.1)
                process = start_supervisor(self.paths)
            time.sleep(0.02)
        raise SupervisorUnavailable(
            f"could not start a supervisor for bus {self.paths.bus!r}; see {self.paths.log_file}"
        )

    def call(self, op: str, **args: Any) -> Any:
        """One control request. If the supervisor is gone, reconnect (with autostart,
        start a new one) and retry until the connect timeout: a supervisor killed a
        moment ago may still refuse or reset connections while it dies."""
        if self._closed:
            raise Closed("this bus connection is closed")
        with self._lock:
            deadline = time.monotonic() + self.timeout
            while True:
                if self._client is not None:
                    try:
                        return self._client.call(op, **args)
                    except SupervisorUnavailable:
                        if time.monotonic() > deadline:
                            raise
                    self._client.close()
                    self._client = None
                try:
                    self._connect()
                except SupervisorUnavailable:
                    if not self.autostart or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)

    def call_if_connected(self, op: str, **args: Any) -> Any:
        """One request over the current connection only: no reconnect, no new supervisor.
        For goodbyes (a group member leaving): if the supervisor is gone, so is what the
        request was about. Returns None when there is no connection or the request fails."""
        client = self._client
        if self._closed or client is None:
            return None
        try:
            with self._lock:
                return client.call(op, **args)
        except ShmbusError:  # gone, stopping, or refused: nothing left to do
            return None

    def ensure_supervisor(self, min_interval: float = 0.5) -> None:
        """Check the supervisor still answers; reconnect, and with autostart start a new
        one, if it died. Clients call this when they wait on something only it does
        (archiving, fsync). Rate-limited: at most one check per min_interval."""
        now = time.monotonic()
        if now - self._last_check < min_interval:
            return
        self._last_check = now
        try:
            self.call("ping")
        except SupervisorUnavailable:
            pass

    def close(self) -> None:
        self._closed = True
        if self._client is not None:
            self._client.close()
            self._client = None
