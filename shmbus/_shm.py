"""POSIX shared-memory objects (/dev/shm): create with the whole size reserved up
front, open an existing one only if it is trusted, unlink. The rings and the groups'
control page both live in one; the C core maps them from the file descriptor these
return.

The objects are files of /dev/shm, opened as such (what shm_open does) so that every
open can say O_NOFOLLOW and every existing object is checked on its open descriptor
(fstat): /dev/shm is world-writable and its names are predictable, so another user
may have created one of ours before us. Creation is O_EXCL, so it never opens one."""
import errno
import os
import secrets
from typing import List, Tuple

from . import _access
from ._errors import NotTrusted, OutOfSpace

SHM_DIR = "/dev/shm"


def path_of(name: str) -> str:
    """The file of the object `name` ("/shmbus:...")."""
    return SHM_DIR + name


def create(name: str, size: int, what: str) -> int:
    """Create name (it must not exist) with the bus's mode and reserve size bytes now, so
    a full /dev/shm fails here with OutOfSpace, never later as a SIGBUS in whoever
    touches the page. Returns an open fd; on failure nothing is left behind.
    FileExistsError if the name is taken."""
    fd = _access.open_nofollow(path_of(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, _access.file_mode())
    try:
        _access.own_fd(fd)
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


def create_fresh(name: str, size: int, what: str) -> Tuple[int, str]:
    """Create name, replacing whatever has it now; (fd, the name used). When the name is
    held by an object this process may not remove (another user's, planted in sticky
    /dev/shm), it is left alone and the object gets `name~<random>` instead: clients
    learn ring and page names from the supervisor, never by building them."""
    try:
        unlink(name)
    except PermissionError:
        pass
    candidate = name
    for _ in range(8):
        try:
            return create(candidate, size, what), candidate
        except (FileExistsError, NotTrusted):  # taken again, or by a planted link
            candidate = f"{name}~{secrets.token_hex(4)}"
    raise FileExistsError(errno.EEXIST, f"cannot create {what} {name} in /dev/shm: every name tried is taken")


def _named_after(name: str, infix: str) -> List[str]:
    prefix = name[1:] + infix
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return []
    return sorted("/" + e for e in entries if e.startswith(prefix))


def alternates(name: str) -> List[str]:
    """The objects create_fresh may have made in name's place (`name~...`), oldest name first."""
    return [n for n in _named_after(name, "~") if "@" not in n]


def retired(name: str) -> List[str]:
    """The rings a partition whose ring is `name` moved on from and kept
    (`name@retired-<time_ns>`), oldest first."""
    return sorted(_named_after(name, "@retired-"), key=lambda n: int(n.rpartition("-")[2] or 0))


def open_existing(name: str, what: str, trust: "_access.Trust") -> Tuple[int, int]:
    """(fd, size) of an existing object that trust accepts: its owner and mode are checked
    on the open descriptor. FileNotFoundError if there is none, NotTrusted if it is not
    the bus's (then nothing of it was read)."""
    path = path_of(name)
    try:
        fd = _access.open_nofollow(path, os.O_RDWR | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, f"no {what} {name} in /dev/shm") from None
    try:
        st = os.fstat(fd)
        _access.check_stat(st, path, trust)
        if trust == _access.own_trust():
            _access.own_fd(fd)  # adopted by its supervisor: exactly the bus's mode from now on
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def unlink(name: str) -> None:
    """Remove the object if it exists. PermissionError if it is another user's (sticky /dev/shm)."""
    try:
        os.unlink(path_of(name))
    except FileNotFoundError:
        pass
