"""Where a bus lives: its data directory and control socket, from arguments,
then the environment (SHMBUS_BUS, SHMBUS_DATA_DIR), then per-user defaults."""
import hashlib
import os
from dataclasses import dataclass
from typing import Optional, Union

from ._access import check_private_dir
from ._names import bus_prefix, validate_name

DEFAULT_BUS = "default"
# A Unix socket path must fit sockaddr_un.sun_path (108 bytes with its NUL).
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class BusPaths:
    """Every path and name one bus uses."""

    bus: str
    data_dir: str

    @classmethod
    def resolve(cls, bus: Optional[str] = None,
                data_dir: Union[str, "os.PathLike[str]", None] = None) -> "BusPaths":
        if bus is None:
            bus = os.environ.get("SHMBUS_BUS") or DEFAULT_BUS
        bus = validate_name(bus, "bus")
        data_dir = data_dir or os.environ.get("SHMBUS_DATA_DIR")
        if not data_dir:
            base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
            data_dir = os.path.join(base, "shmbus", bus)
        return cls(bus, os.path.abspath(os.fspath(data_dir)))

    @property
    def lock_file(self) -> str:
        return os.path.join(self.data_dir, "supervisor.lock")

    @property
    def log_file(self) -> str:
        return os.path.join(self.data_dir, "supervisor.log")

    @property
    def autostart_lock(self) -> str:
        """Held by the one client that starts a supervisor for the bus (others wait on it)."""
        return os.path.join(self.data_dir, "autostart.lock")

    @property
    def clean_marker(self) -> str:
        return os.path.join(self.data_dir, "clean-shutdown")

    @property
    def topics_dir(self) -> str:
        return os.path.join(self.data_dir, "topics")

    @property
    def socket_path(self) -> str:
        path = os.path.join(self.data_dir, "supervisor.sock")
        if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha1(os.fsencode(self.data_dir)).hexdigest()[:16]
        return os.path.join(self.runtime_dir(), f"{self.bus[:40]}-{digest}.sock")

    @staticmethod
    def runtime_dir() -> str:
        """A private directory for sockets whose data dir path is too long. In /tmp anyone
        may create it first: one that is not ours, or that others can write, is refused
        (NotTrusted), as ssh-agent and systemd refuse theirs."""
        base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
        path = os.path.join(base, f"shmbus-{os.getuid()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        check_private_dir(path)
        return path

    @property
    def shm_prefix(self) -> str:
        return bus_prefix(self.bus, self.data_dir)
