"""Who may use a bus: its user only (the default: 0600 files, 0700 directories), or
also the members of one Unix group, chosen explicitly with
`shmbus serve --share-group GROUP` and remembered in the data dir (bus.json), so an
autostarted supervisor shares the same way. Only the supervisor creates the bus's
files, rings and socket, so only it applies this."""
import grp
import json
import os
import pwd
import stat
from typing import Optional

from ._errors import InvalidArgument, NotTrusted

_gid: Optional[int] = None  # the group shared with, in the supervisor process; None: private


def configure(data_dir: str, share_group: Optional[str] = None) -> Optional[str]:
    """Apply the bus's sharing: record share_group if given, else use the recorded one."""
    global _gid
    path = os.path.join(data_dir, "bus.json")
    if share_group is not None:
        try:
            grp.getgrnam(share_group)
        except KeyError:
            raise InvalidArgument(f"no Unix group named {share_group!r}") from None
        with open(path, "w") as f:
            json.dump({"share_group": share_group}, f)
    try:
        with open(path) as f:
            share_group = json.load(f).get("share_group")
    except FileNotFoundError:
        share_group = None
    _gid = grp.getgrnam(share_group).gr_gid if share_group else None
    # Whatever is created without an explicit mode stays private, or group-only.
    os.umask(0o007 if _gid is not None else 0o077)
    make_dir(data_dir)
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            own(os.path.join(root, name))
    return share_group


def file_mode() -> int:
    return 0o660 if _gid is not None else 0o600


def dir_mode() -> int:
    return 0o2770 if _gid is not None else 0o700  # setgid: new entries take the group


def make_dir(path: str) -> None:
    os.makedirs(path, mode=dir_mode(), exist_ok=True)
    if _gid is not None:
        os.chown(path, -1, _gid)
        os.chmod(path, dir_mode())


def own(path: str) -> None:
    """Give a file the bus's group and mode (a no-op for a private bus)."""
    if _gid is not None:
        os.chown(path, -1, _gid)
        os.chmod(path, dir_mode() if os.path.isdir(path) else file_mode())


def own_fd(fd: int) -> None:
    if _gid is not None:
        os.fchown(fd, -1, _gid)
        os.fchmod(fd, file_mode())


def user_name(uid: int) -> str:
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def dir_owner(path: str) -> Optional[int]:
    """The uid owning a directory (following a link: the data dir may be one), None if absent."""
    try:
        return os.stat(path).st_uid
    except FileNotFoundError:
        return None


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
