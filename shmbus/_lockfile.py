"""The bus's lock files, as its clients see them: who holds the supervisor's lock (an
flock on <data_dir>/supervisor.lock, which records the holder's pid), and the autostart
lock that lets one client at a time start a supervisor.

Whether a lock is held is read from /proc/locks, never by trying to take it: a probe
that took the supervisor's lock even for a moment could make a starting supervisor
lose its race for it and exit."""
import fcntl
import os
import time
from typing import List, NamedTuple, Optional, Tuple

import psutil

from . import _access
from ._errors import SupervisorUnavailable


class Holder(NamedTuple):
    """A process holding a lock."""

    pid: Optional[int]   # None if it cannot be told (another pid namespace, no pid recorded)

    def status(self) -> Optional[str]:
        """psutil's status of the holder ("running", "sleeping", "stopped", ...), None if unknown."""
        if self.pid is None:
            return None
        try:
            return str(psutil.Process(self.pid).status())
        except psutil.Error:
            return None

    def describe(self) -> str:
        if self.pid is None:
            return "pid unknown"
        status = self.status()
        return f"pid {self.pid}, {status}" if status else f"pid {self.pid}"


def _flock_holders(path: str) -> List[Tuple[bool, int]]:
    """The flocks /proc/locks lists on path's inode: (same device, pid) each. The device
    is compared apart because on some file systems (overlayfs) stat() and /proc/locks
    may name different devices for the same file; pid is -1 when it cannot be told."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return []
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}"
    found = []
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters have "->" after the number.
            if len(fields) < 6 or fields[1] != "FLOCK":
                continue
            where = fields[5].rsplit(":", 1)
            if len(where) == 2 and where[1] == str(st.st_ino):
                pid = int(fields[4]) if fields[4].isdigit() and int(fields[4]) > 0 else -1
                found.append((where[0] == device, pid))
    return found


def supervisor_holder(lock_file: str, trust: "_access.Trust") -> Optional[Holder]:
    """The process holding a bus's supervisor lock (a supervisor, running, starting or
    stopping), or None if none does. Its pid is the one it recorded in the file (if
    trust accepts the file), else the one /proc/locks gives."""
    holders = _flock_holders(lock_file)
    if not holders:
        return None
    recorded: Optional[int] = None
    try:
        fd = _access.open_file(lock_file, os.O_RDONLY, trust)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            text = os.pread(fd, 64, 0).decode(errors="replace").strip()
            recorded = int(text) if text.isdigit() else None
        finally:
            os.close(fd)
    for same_device, pid in holders:
        if same_device or (recorded is not None and pid == recorded):
            return Holder(recorded or (pid if pid > 0 else None))
    return None


class AutostartLock:
    """Held by the one client that starts a bus's supervisor; the others wait for it
    (polling, so that a deadline holds and Ctrl-C works), then find that supervisor."""

    def __init__(self, path: str, deadline: float, what: str):
        self.path = path
        self.deadline = deadline
        self.what = what
        self._fd: Optional[int] = None

    def __enter__(self) -> "AutostartLock":
        fd = _access.open_file(self.path, os.O_RDWR | os.O_CREAT, _access.owner_trust(os.geteuid()))
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= self.deadline:
                        raise SupervisorUnavailable(f"another process held the {self.what} until the "
                                                    f"timeout ({self.path})") from None
                    time.sleep(0.01)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
