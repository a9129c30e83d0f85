"""POSIX shared-memory objects (/dev/shm): create with the whole size reserved up
front, open, unlink. The rings and the groups' control page both live in one;
the C core maps them from the file descriptor these return."""
import errno
import os
from typing import Tuple

import posix_ipc

from . import _access
from ._errors import OutOfSpace


def create(name: str, size: int, what: str) -> int:
    """Create name (it must not exist) and reserve size bytes now, so a full /dev/shm
    fails here with OutOfSpace, never later as a SIGBUS in whoever touches the page.
    Returns an open fd; on failure nothing is left behind."""
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=_access.file_mode())
    fd = os.dup(shm.fd)
    shm.close_fd()
    _access.own_fd(fd)
    try:
        os.ftruncate(fd, size)
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        os.close(fd)
        unlink(name)
        if e.errno in (errno.ENOSPC, errno.EFBIG):
            raise OutOfSpace(f"/dev/shm has no room for a {size} byte {what} ({name}): free space "
                             f"there, or ask for a smaller one") from None
        raise
    return fd


def open_existing(name: str, what: str) -> Tuple[int, int]:
    """(fd, size) of an existing object; FileNotFoundError if there is none."""
    try:
        shm = posix_ipc.SharedMemory(name)
    except posix_ipc.ExistentialError:
        raise FileNotFoundError(errno.ENOENT, f"no {what} {name} in /dev/shm") from None
    fd, size = os.dup(shm.fd), shm.size
    shm.close_fd()
    return fd, size


def unlink(name: str) -> None:
    try:
        posix_ipc.unlink_shared_memory(name)
    except posix_ipc.ExistentialError:
        pass
