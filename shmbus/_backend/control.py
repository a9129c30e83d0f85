"""The control page (control.c): consumer group generations and member poll times."""
import os
from typing import Optional

from .. import _shm
from .._access import Trust
from .._errors import BadControlPage
from .._native._core import ffi, lib
from .core import NULL, CData


class ControlPage:
    """The bus's mapped control page: a generation word per group (written by the
    supervisor, loaded by members on each poll) and a last-poll time per member.
    Close it explicitly; never left to GC."""

    __slots__ = ("name", "ptr", "id")

    def __init__(self, name: str, ptr: CData):
        self.name = name
        self.ptr = ptr
        self.id = lib.sb_ctl_id(ptr)  # its creation time: tells a replaced page from this one

    @classmethod
    def create(cls, name: str) -> "ControlPage":
        """A new page, replacing what has the name (or under another name: see
        _shm.create_fresh; read it from `.name`)."""
        fd, name = _shm.create_fresh(name, lib.sb_ctl_total_bytes(), "control page")
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ctl_create(fd, err)
            if ptr == NULL:
                _shm.unlink(name)
                raise OSError(err[0], f"cannot map control page {name}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    @classmethod
    def attach(cls, name: str, trust: Trust) -> "ControlPage":
        """Map an existing page that trust accepts (NotTrusted if not: it is never read);
        FileNotFoundError if absent, BadControlPage if invalid."""
        fd, size = _shm.open_existing(name, "control page", trust)
        try:
            err = ffi.new("int *")
            ptr = lib.sb_ctl_attach(fd, size, err)
            if ptr == NULL:
                raise BadControlPage(f"{name} is not a control page of version {lib.SB_CTL_VERSION}")
        finally:
            os.close(fd)
        return cls(name, ptr)

    unlink = staticmethod(_shm.unlink)
    alternates = staticmethod(_shm.alternates)

    def close(self) -> None:
        if self.ptr is not None:
            lib.sb_ctl_close(self.ptr)
            self.ptr = None

    def generation(self, group_slot: int) -> int:
        return lib.sb_ctl_generation(self.ptr, group_slot)

    def set_generation(self, group_slot: int, generation: int) -> None:
        lib.sb_ctl_set_generation(self.ptr, group_slot, generation)

    def set_member(self, member_slot: int, token: int) -> None:
        """Give a member line to token (0 frees it) and stamp its last poll now."""
        lib.sb_ctl_member_set(self.ptr, member_slot, token)

    def idle_seconds(self, member_slot: int, token: int) -> Optional[float]:
        """Seconds since the member last polled; None if the line is no longer its own."""
        idle_ns = lib.sb_ctl_member_idle_ns(self.ptr, member_slot, token)
        return None if idle_ns < 0 else idle_ns / 1e9

    def poll(self, group_slot: int, member_slot: int, token: int) -> int:
        """A member's per-poll call: stamp its poll time (if the line is still its own)
        and return its group's generation word."""
        return lib.sb_ctl_poll(self.ptr, group_slot, member_slot, token)
