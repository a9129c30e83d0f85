"""Who may use a bus, and what a bus trusts.

Who: its user only (the default: 0600 files, 0700 directories), or also the members of
one Unix group, chosen explicitly with `shmbus serve --share-group GROUP` and remembered
in the data dir (bus.json), so an autostarted supervisor shares the same way. Only the
supervisor creates the bus's files, rings and socket, so only it applies the modes; at
start it also brings everything already in the data dir to them (configure).

What it trusts: a ring, control page, file or directory of the bus is used only if it
is owned by the bus's user and lets in no more than the bus does (nothing for "other";
group bits only for the shared group). Every check is made on the open file descriptor
(fstat), never on a path that could be swapped between a check and an open, and paths
are opened with O_NOFOLLOW: a symbolic link planted in the data dir or in /dev/shm is
refused, never followed. This matters because the names in /dev/shm are world-visible
and predictable, and anyone may create one before the bus does.
"""
import errno
import grp
import json
import os
import pwd
import stat
from typing import Any, Dict, NamedTuple, Optional

from ._errors import InvalidArgument, NotTrusted, ShmbusError

BUS_FILE = "bus.json"
SOCKET_FILE = "supervisor.sock"   # the one entry of the data dir that is neither file nor directory

_gid: Optional[int] = None  # the group shared with, in the supervisor process; None: private


class Trust(NamedTuple):
    """What a file of the bus must be for this process to use it."""

    uid: int             # its owner
    file_mode: int       # the most a file's permission bits may grant
    dir_mode: int        # the most a directory's may
    gid: Optional[int]   # the only group that granted group bits may name (None: any)


def own_trust() -> Trust:
    """The supervisor's view of its own files: its user, the bus's modes and group."""
    return Trust(os.geteuid(), file_mode(), dir_mode(), _gid)


def owner_trust(uid: int) -> Trust:
    """Only the owner checked: for what is about to be given the bus's modes."""
    return Trust(uid, 0o777, 0o7777, None)


def server_trust(uid: int) -> Trust:
    """A client's view of its supervisor's files: owned by the supervisor's user (uid),
    no access for other."""
    return Trust(uid, 0o770, 0o2770, None)


def file_mode() -> int:
    return 0o660 if _gid is not None else 0o600


def dir_mode() -> int:
    return 0o2770 if _gid is not None else 0o700  # setgid: new entries take the group


# ---- checks ----

def user_name(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return f"gid {gid} ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return f"gid {gid}"


def check_stat(st: os.stat_result, path: str, trust: Trust, directory: bool = False) -> None:
    """NotTrusted unless st (an fstat of the open file) is what trust allows."""
    if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        raise NotTrusted(f"{path} is not a {'directory' if directory else 'regular file'}: refused")
    if st.st_uid != trust.uid:
        raise NotTrusted(f"{path} is owned by {user_name(st.st_uid)}, not by {user_name(trust.uid)}, the "
                         f"bus's user: refused (someone else may have planted it: remove it)")
    mode = stat.S_IMODE(st.st_mode)
    allowed = trust.dir_mode if directory else trust.file_mode
    if mode & ~allowed:
        raise NotTrusted(f"{path} has mode {mode:04o}, which lets in more than the bus does "
                         f"({allowed:04o}): refused")
    if trust.gid is not None and mode & 0o070 and st.st_gid != trust.gid:
        raise NotTrusted(f"{path} lets in group {group_name(st.st_gid)}, not the bus's group "
                         f"{group_name(trust.gid)}: refused")


def open_nofollow(path: str, flags: int, mode: int = 0o600, dir_fd: Optional[int] = None,
                  shown: Optional[str] = None) -> int:
    """os.open with O_NOFOLLOW | O_CLOEXEC; a symbolic link is NotTrusted (shown: the path to name)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotTrusted(f"{shown or path} is a symbolic link: refused (the bus never follows one)") from None
        raise


def open_file(path: str, flags: int, trust: Trust, create_mode: Optional[int] = None) -> int:
    """Open path without following a symbolic link, and check the open file against
    trust (NotTrusted, and nothing is left open, if it fails). O_NONBLOCK: a FIFO
    planted in place of a file must not hang the open; it is refused as not a file."""
    fd = open_nofollow(path, flags | os.O_NONBLOCK, file_mode() if create_mode is None else create_mode)
    try:
        check_stat(os.fstat(fd), path, trust)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_file(path: str) -> int:
    """A new file of the supervisor's at path, open for writing, with the bus's mode.
    Whatever was there is removed first, and O_EXCL | O_NOFOLLOW means nothing planted
    in between (a symbolic link to a file elsewhere) is ever opened."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    try:
        fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, file_mode())
    except FileExistsError:
        raise NotTrusted(f"{path} was created by someone else while the bus replaced it: refused") from None
    own_fd(fd)
    return fd


def own_fd(fd: int, directory: bool = False) -> None:
    """Give an open file (or directory) of the supervisor the bus's group and mode."""
    st = os.fstat(fd)
    if _gid is not None and st.st_gid != _gid:
        os.fchown(fd, -1, _gid)
    mode = dir_mode() if directory else file_mode()
    if stat.S_IMODE(os.fstat(fd).st_mode) != mode:
        os.fchmod(fd, mode)


def make_dir(path: str) -> None:
    """Create a directory of the bus inside the data dir, or take the one there (it must
    be the bus user's, and not a link), and give it the bus's mode."""
    os.makedirs(path, mode=dir_mode(), exist_ok=True)
    fd = open_nofollow(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        check_stat(os.fstat(fd), path, owner_trust(os.geteuid()), directory=True)
        own_fd(fd, directory=True)
    finally:
        os.close(fd)


def own_socket(path: str) -> None:
    """Give the control socket the bus's group (its mode came from the umask at bind).
    lchown: should the path have been swapped for a link, only the link changes."""
    if _gid is not None:
        os.chown(path, -1, _gid, follow_symlinks=False)


def socket_umask() -> int:
    """The umask to bind the control socket with: 0600, or 0660 when shared."""
    return 0o117 if _gid is not None else 0o177


def dir_owner(path: str) -> Optional[int]:
    """The uid owning a directory (following a link: the data dir may be one), None if absent."""
    try:
        return os.stat(path).st_uid
    except FileNotFoundError:
        return None


def check_data_dir(data_dir: str) -> None:
    """Create the data dir (0700), or check that the one there is a directory of this
    process's user: a supervisor serves only its own user's data dir."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        check_stat(os.fstat(fd), data_dir, owner_trust(os.geteuid()), directory=True)
    finally:
        os.close(fd)


def check_private_dir(path: str) -> None:
    """A directory of ours that nobody else can write (a runtime dir for sockets), as
    ssh-agent and systemd require: NotTrusted otherwise. Checked with lstat: it lives in
    a sticky directory (/tmp), so once it is ours nobody else can rename or replace it."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotTrusted(f"{path} is not a directory (a link or a file): refused; remove it")
    if st.st_uid != os.geteuid():
        raise NotTrusted(f"{path} is owned by {user_name(st.st_uid)}, not by you ({user_name(os.geteuid())}): "
                         f"refused, since whoever made it controls the sockets in it; remove it")
    if st.st_mode & 0o022:
        raise NotTrusted(f"{path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
                         f"refused; chmod 700 it or remove it")


# ---- the bus's sharing ----

def _bus_record(data_dir: str, trust: Trust) -> Dict[str, Any]:
    """What bus.json records: the bus's name (the one bus the data dir belongs to) and
    the group it is shared with. {} if there is no such file yet."""
    path = os.path.join(data_dir, BUS_FILE)
    try:
        fd = open_file(path, os.O_RDONLY, trust)
    except FileNotFoundError:
        return {}
    with os.fdopen(fd) as f:
        try:
            record = json.load(f)
        except ValueError as e:
            raise ShmbusError(f"{path} is not valid: {e}; fix or remove it") from None
    if not isinstance(record, dict):
        raise ShmbusError(f"{path} is not valid: not a JSON object; fix or remove it")
    return record


def recorded_share_group(data_dir: str, trust: Trust) -> Optional[str]:
    """The group the bus is shared with, as bus.json records it (None: private)."""
    share_group = _bus_record(data_dir, trust).get("share_group")
    return share_group if isinstance(share_group, str) else None


def check_bus_name(data_dir: str, bus: str, trust: Trust) -> None:
    """A data dir belongs to one bus: ShmbusError if bus.json names another (a client
    or supervisor with another name would otherwise reach that bus's topics)."""
    recorded = _bus_record(data_dir, trust).get("bus")
    if isinstance(recorded, str) and recorded != bus:
        raise ShmbusError(f"data dir {data_dir} belongs to bus {recorded!r}, not {bus!r}: use bus "
                          f"{recorded!r} (--bus / SHMBUS_BUS), or another data dir for {bus!r}")


def configure(data_dir: str, share_group: Optional[str] = None, bus: Optional[str] = None) -> Optional[str]:
    """In the supervisor, at start: apply the bus's sharing (record share_group if given,
    else use the recorded one), then give every file and directory in the data dir the
    bus's mode (and group). Anything there that is not the bus user's, a symbolic link, or
    neither file nor directory is refused (NotTrusted names it): the supervisor won't start."""
    global _gid
    check_data_dir(data_dir)
    path = os.path.join(data_dir, BUS_FILE)
    record = _bus_record(data_dir, owner_trust(os.geteuid()))
    if bus is not None:
        check_bus_name(data_dir, bus, owner_trust(os.geteuid()))
    if share_group is None:
        recorded = record.get("share_group")
        share_group = recorded if isinstance(recorded, str) else None
    try:
        _gid = grp.getgrnam(share_group).gr_gid if share_group else None
    except KeyError:
        raise InvalidArgument(f"no Unix group named {share_group!r}") from None
    # Whatever is created without an explicit mode stays private, or group-only.
    os.umask(0o007 if _gid is not None else 0o077)
    wanted = dict(record)
    if share_group is not None:
        wanted["share_group"] = share_group
    if bus is not None:
        wanted["bus"] = bus
    if wanted != record:
        tmp = f"{path}.tmp"
        with os.fdopen(create_file(tmp), "w") as f:
            json.dump(wanted, f)
        os.replace(tmp, path)
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        own_fd(fd, directory=True)
        _own_tree(fd, data_dir)
    finally:
        os.close(fd)
    return share_group


def _own_tree(dir_fd: int, dir_path: str) -> None:
    """Check and give the bus's modes to everything under an open directory, through
    file descriptors all the way down (no path is looked up twice)."""
    trust = owner_trust(os.geteuid())
    for name in sorted(os.listdir(dir_fd)):
        path = os.path.join(dir_path, name)
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISSOCK(st.st_mode) and name == SOCKET_FILE:
            continue  # a dead supervisor's socket: removed and made again when serving starts
        if stat.S_ISLNK(st.st_mode):
            raise NotTrusted(f"{path} is a symbolic link: refused (the bus makes none; remove it)")
        directory = stat.S_ISDIR(st.st_mode)
        if not (directory or stat.S_ISREG(st.st_mode)):
            raise NotTrusted(f"{path} is neither a file nor a directory: refused (the bus makes none; remove it)")
        fd = open_nofollow(name, os.O_RDONLY | (os.O_DIRECTORY if directory else os.O_NONBLOCK),
                           dir_fd=dir_fd, shown=path)
        try:
            check_stat(os.fstat(fd), path, trust, directory)
            own_fd(fd, directory)
            if directory:
                _own_tree(fd, path)
        finally:
            os.close(fd)


def peer_allowed(uid: int, gid: int) -> bool:
    """May a process of uid (primary group gid) use this bus: the bus's user, root, or,
    when the bus is shared, a member of its group (primary or supplementary)."""
    if uid in (os.geteuid(), 0):
        return True
    if _gid is None:
        return False
    if gid == _gid:
        return True
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return False
    return _gid in os.getgrouplist(entry.pw_name, entry.pw_gid)


def describe_access() -> str:
    """Who may use the bus, for an error message."""
    if _gid is None:
        return f"it is private to {user_name(os.geteuid())}"
    return f"it is shared with the members of group {group_name(_gid)} only"
