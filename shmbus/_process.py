"""Process identity: a pid plus its create time, so a reused pid never passes for
the process that died (Chronicle's dead-owner check, done through psutil)."""
import os
from typing import Optional, Tuple

import psutil

_my_identity: Optional[Tuple[int, int]] = None


def start_ms(pid: int) -> Optional[int]:
    """The process's create time in ms since the epoch, or None if it is gone."""
    try:
        return round(psutil.Process(pid).create_time() * 1000)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied, ValueError):
        return None


def my_identity() -> Tuple[int, int]:
    """(pid, start_ms) of this process; recomputed after a fork."""
    global _my_identity
    pid = os.getpid()
    if _my_identity is None or _my_identity[0] != pid:
        _my_identity = (pid, start_ms(pid) or 0)
    return _my_identity


def is_alive(pid: int, expected_start_ms: int) -> bool:
    """True if pid runs and is the same process (create times within 20 ms; 0 = not yet known)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = round(process.create_time() * 1000)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, ValueError):
        return False
    except psutil.AccessDenied:
        return True
    return expected_start_ms == 0 or abs(started - expected_start_ms) <= 20
