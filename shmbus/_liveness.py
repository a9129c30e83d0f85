"""Whether a client process is alive, on the kernel's word, across pid namespaces.

A pid means nothing in another pid namespace -- two containers sharing one /dev/shm
(`docker run --ipc=container:X`) see different pids for the same process, and a
producer's pid may name some other process, or none, here. So every client process
holds a liveness lock: an flock on its own file in /dev/shm, `shmbus@live:<token>`,
taken when it first needs one and kept for its life. The kernel drops the lock when
the process dies, however it dies, and an flock crosses pid namespaces (it belongs
to the open file, not to a pid). The token goes where the pid went: into producer
slots and group memberships. To ask "is it alive?", try the lock: if it can be had,
the owner is gone.

The pid and its create time stay as a hint: for the log, and for the one case the
lock cannot answer -- its file is missing (an operator cleaned /dev/shm) -- where a
process is alive only if that pid runs here with that create time. Never is a
process that may be alive treated as dead because of a pid alone.
"""
import atexit
import errno
import fcntl
import os
import secrets
import threading
import time
from typing import Optional

from ._process import is_alive as pid_is_alive

SHM_DIR = "/dev/shm"
NAME_PREFIX = "shmbus@live:"
# Liveness files say nothing but that a process lives: readable by all, so that the
# supervisor of a bus shared with a group can check a member of it.
FILE_MODE = 0o644
# A staging file younger than this may be one another process is creating right now.
STAGING_GRACE = 10.0

_lock = threading.Lock()
_mine: Optional["_LivenessLock"] = None


class _LivenessLock:
    """This process's lock: a token, and the open file that holds the flock."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.token = secrets.randbits(63) | 1   # never 0: 0 means "no owner" in a slot
        path = file_path(self.token)
        staging = f"{path}.new"
        # Locked before it gets its real name: a checker never finds it unlocked.
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)   # whatever the umask
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(staging, path)
        except BaseException:
            os.close(fd)
            _unlink(staging)
            raise
        self.fd = fd
        self.path = path

    def release(self) -> None:
        _unlink(self.path)
        os.close(self.fd)


def file_path(token: int) -> str:
    return os.path.join(SHM_DIR, f"{NAME_PREFIX}{token:016x}")


def my_token() -> int:
    """This process's liveness token, taking its lock on first use (and again in a
    child after fork: the lock a child inherits is its parent's, not its own)."""
    global _mine
    mine = _mine
    if mine is not None and mine.pid == os.getpid():
        return mine.token
    with _lock:
        if _mine is None or _mine.pid != os.getpid():
            _mine = _LivenessLock()
        return _mine.token


def _forget_after_fork() -> None:
    """In a forked child: close the parent's lock file (keeping it open would keep the
    parent 'alive' as long as the child lives); a new lock is taken on first use."""
    global _mine
    if _mine is not None:
        try:
            os.close(_mine.fd)
        except OSError:
            pass
        _mine = None


os.register_at_fork(after_in_child=_forget_after_fork)


def release_mine() -> None:
    """Give up this process's lock (at exit; a killed process's file is swept by the
    supervisor). Safe to call more than once."""
    global _mine
    with _lock:
        if _mine is not None and _mine.pid == os.getpid():
            _mine.release()
        _mine = None


atexit.register(release_mine)


def is_alive(token: int, pid: int, start_ms: int) -> bool:
    """Is the process holding the liveness lock `token` alive? (pid, start_ms) is only
    consulted when the lock's file is missing; a token of 0 (none recorded) falls back
    to the pid check."""
    if not token:
        return pid_is_alive(pid, start_ms)
    mine = _mine
    if mine is not None and mine.token == token and mine.pid == os.getpid():
        return True   # ours (the supervisor's own reaper slots, every pass)
    try:
        fd = os.open(file_path(token), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return pid_is_alive(pid, start_ms)
    except OSError:
        return True   # cannot look: it may be alive
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:   # held (EWOULDBLOCK): alive; or cannot tell: may be alive
            return True
        _unlink(file_path(token))   # its owner is gone for good: clean up after it
        return False
    finally:
        os.close(fd)


def sweep_dead() -> int:
    """Remove the liveness files of processes that died without removing them (SIGKILL).
    Returns how many. Files of other users, or that cannot be looked at, are left."""
    removed = 0
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(NAME_PREFIX):
            continue
        path = os.path.join(SHM_DIR, name)
        if name.endswith(".new") and _age(path) < STAGING_GRACE:
            continue   # being created: it is locked only a moment after it appears
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            if _unlink(path):
                removed += 1
        finally:
            os.close(fd)
    return removed


def _age(path: str) -> float:
    try:
        return time.time() - os.stat(path, follow_symlinks=False).st_mtime
    except OSError:
        return 0.0


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EPERM, errno.EACCES):
            raise
        return False
