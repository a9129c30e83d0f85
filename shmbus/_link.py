"""A client's link to its bus's supervisor: the control connection, and starting a
supervisor on demand (autostart) when none answers.

The connection stays open for the client's lifetime: the supervisor sees it close
when the process dies (the kernel's liveness signal). Records never pass through it.
"""
import os
import stat
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Optional, Set

from . import _access
from ._config import BusPaths
from ._errors import Closed, ShmbusError, SupervisorUnavailable, Timeout
from ._lockfile import AutostartLock, Holder, supervisor_holder
from ._protocol import ControlClient

AUTOSTART_TIMEOUT = 15.0
START_ATTEMPTS = 3      # supervisors that exit at start before a connect gives up
START_BACKOFF = 0.25    # seconds before starting the second one, doubled after each


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


def last_log_line(paths: BusPaths) -> str:
    """The last line of the supervisor's log ("" if there is none to read)."""
    try:
        fd = _access.open_file(paths.log_file, os.O_RDONLY, _access.owner_trust(os.geteuid()))
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        tail = os.pread(fd, 4096, max(0, size - 4096))
    finally:
        os.close(fd)
    lines = [line.strip() for line in tail.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def lock_holder(paths: BusPaths) -> Optional[Holder]:
    """The supervisor holding the bus's lock (running, starting, stopping or stuck), or None."""
    owner = _access.dir_owner(paths.data_dir)
    return supervisor_holder(paths.lock_file, _access.server_trust(os.geteuid() if owner is None else owner))


def wait_for_supervisor_exit(paths: BusPaths, timeout: float) -> None:
    """A supervisor holds its lock until it has removed everything: wait for the lock."""
    deadline = time.monotonic() + timeout
    while lock_holder(paths) is not None:
        if time.monotonic() > deadline:
            raise Timeout(f"the supervisor of bus {paths.bus!r} did not stop within {timeout}s")
        time.sleep(0.02)


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
        if os.path.isdir(paths.data_dir):
            # Before any connect: the socket in the data dir is its own bus's, whatever our name.
            # (Only the owner matters for a name; the supervisor checks the modes at start.)
            owner = _access.dir_owner(paths.data_dir)
            _access.check_bus_name(paths.data_dir, paths.bus,
                                   _access.owner_trust(os.geteuid() if owner is None else owner))
        with self._lock:
            self._connect(time.monotonic() + timeout)

    # ---- connecting, and starting a supervisor ----

    def _server_uids(self) -> Set[int]:
        owner = _access.dir_owner(self.paths.data_dir)
        return {os.geteuid() if owner is None else owner, 0}

    def _try_connect(self) -> Optional[SupervisorUnavailable]:
        """Connect once; None on success, else why not. NotTrusted (an impersonator) is raised."""
        try:
            client = ControlClient(self.paths.socket_path, server_uids=self._server_uids())
        except SupervisorUnavailable as e:
            return e
        self.server_uid = client.server_uid
        self._client = client
        return None

    def _connect(self, deadline: float, reconnecting: bool = False) -> None:
        """Connect before deadline. While a supervisor holds the bus's lock (it is starting,
        or stopping) wait for it; when none does, start one (autostart) or give up --
        unless this reconnects a client whose supervisor died: then wait for whoever
        restarts it, until the deadline."""
        while True:
            error = self._try_connect()
            if error is None:
                return
            holder = lock_holder(self.paths)
            if holder is None:
                if not self.autostart:
                    if reconnecting and time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    raise self._not_running(error)
                self._autostart(deadline)
                return
            if time.monotonic() >= deadline:
                raise SupervisorUnavailable(f"the supervisor of bus {self.paths.bus!r} ({holder.describe()}) holds "
                                            f"its lock but does not answer: {error}")
            time.sleep(0.02)

    def _autostart(self, deadline: float) -> None:
        """Start a supervisor and connect to it. One client at a time per bus does this (the
        autostart lock); the others wait, then connect to the one it started. A supervisor
        that exits at start (it crashed, or lost the race for the bus's lock) is started
        again only after a back-off, and at most START_ATTEMPTS times."""
        owner = _access.dir_owner(self.paths.data_dir)
        if owner is not None and owner != os.geteuid():
            raise SupervisorUnavailable(
                f"no supervisor runs for bus {self.paths.bus!r}, and only the owner of {self.paths.data_dir} "
                f"({_access.user_name(owner)}) may start one")
        os.makedirs(self.paths.data_dir, mode=0o700, exist_ok=True)
        with AutostartLock(self.paths.autostart_lock, deadline, f"autostart lock of bus {self.paths.bus!r}"):
            process: Optional["subprocess.Popen[bytes]"] = None
            exits = 0
            backoff = START_BACKOFF
            while True:
                error = self._try_connect()
                if error is None:
                    return
                starting = lock_holder(self.paths) is not None or (process is not None and process.poll() is None)
                if not starting:
                    if process is not None:
                        exits += 1
                        if exits >= START_ATTEMPTS or time.monotonic() + backoff >= deadline:
                            raise self._start_failed(f"it exited at start {exits} time(s)")
                        time.sleep(backoff)
                        backoff *= 2
                    process = start_supervisor(self.paths)
                if time.monotonic() >= deadline:
                    raise self._start_failed(f"it did not answer within {self.timeout:g}s ({error})")
                time.sleep(0.02)

    def _not_running(self, error: SupervisorUnavailable) -> SupervisorUnavailable:
        return SupervisorUnavailable(f"bus {self.paths.bus!r} does not run (no supervisor for {self.paths.data_dir}); "
                                     f"start it with `shmbus serve`, or connect with autostart=True")

    def _start_failed(self, why: str) -> SupervisorUnavailable:
        last = last_log_line(self.paths)
        return SupervisorUnavailable(f"could not start a supervisor for bus {self.paths.bus!r}: {why}; see "
                                     f"{self.paths.log_file}" + (f", which ends: {last}" if last else ""))

    # ---- requests ----

    def call(self, op: str, **args: Any) -> Any:
        """One control request. If the supervisor is gone, reconnect (with autostart,
        start a new one) and retry until the connect timeout: a supervisor killed a
        moment ago may still refuse or reset connections while it dies."""
        return self._request(op, args, self.autostart)

    def query(self, op: str, **args: Any) -> Any:
        """A request that only reads (listing, describing, stats, group admin): like call(),
        but it never starts a supervisor -- if none runs, SupervisorUnavailable says so."""
        return self._request(op, args, False)

    def _request(self, op: str, args: Dict[str, Any], autostart: bool) -> Any:
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
                if autostart:
                    self._connect(deadline, reconnecting=True)
                    continue
                error = self._try_connect()
                if error is not None:
                    if lock_holder(self.paths) is None:
                        raise self._not_running(error)
                    if time.monotonic() > deadline:
                        raise error
                    time.sleep(0.02)

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
        """Clients call this while they wait on something only the supervisor does
        (archiving, fsync): if no supervisor holds the bus's lock any more (it died),
        reconnect -- with autostart, start a new one. One that holds the lock, busy or
        stopped (SIGSTOP), is left alone: a restart would not help, and a request to it
        could block the waiting caller far past its own timeout. Rate-limited: at most
        one check per min_interval."""
        now = time.monotonic()
        if now - self._last_check < min_interval:
            return
        self._last_check = now
        if lock_holder(self.paths) is not None:
            return
        try:
            self.call("ping")
        except SupervisorUnavailable:
            pass

    def close(self) -> None:
        self._closed = True
        if self._client is not None:
            self._client.close()
            self._client = None
