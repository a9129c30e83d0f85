"""A bus per test, and what it leaves behind: unique names, the supervisor's process,
and the check that a clean stop leaves nothing running and nothing in /dev/shm."""
import errno
import os
import secrets
import time

import psutil

import shmbus
from shmbus._config import BusPaths


def unique_bus_name():
    """Random, so it is unique in every command line on the host (the leak check greps for it)."""
    return f"sbt{os.getpid()}x{secrets.token_hex(4)}"


def new_paths(name, data_dir):
    return BusPaths.resolve(name, str(data_dir))


def shm_leftovers(paths):
    """Names in /dev/shm that belong to the bus (every one starts with its prefix)."""
    prefix = paths.shm_prefix
    try:
        entries = os.listdir("/dev/shm")
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if e.startswith(prefix))


def processes_mentioning(text):
    """Live processes (not zombies, not us) whose command line contains text."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.info["pid"] == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(proc.info["cmdline"] or ())
        if text in cmdline:
            found.append(proc)
    return found


def reap_if_child(pid):
    """Collect a zombie child (a supervisor connect() started from this process).
    True once it is reaped (or is not ours to reap)."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return reaped == pid


def threads_left(pid):
    """How many threads of pid still exist. A killed multi-threaded process
    shows as a zombie as soon as its main thread is done, while its other
    threads may still hold its files (and its listening socket) open."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def supervisor_process(paths):
    """The psutil.Process of the bus's supervisor, or None."""
    for proc in processes_mentioning(paths.bus):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if "serve" in cmdline and paths.data_dir in cmdline:
            return proc
    return None


def wait_until(predicate, timeout, interval=0.02):
    """Poll predicate until it is truthy (returns its value) or timeout (returns it falsy)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_gone(proc, timeout):
    """Wait for a psutil.Process to be gone for good: every thread finished, so
    its files and sockets are closed. True if it is."""
    def gone():
        try:
            zombie = proc.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True
        return zombie and threads_left(proc.pid) <= 1 and reap_if_child(proc.pid)
    return wait_until(gone, timeout)


def stop_bus(paths, timeout=20.0):
    """Ask the bus's supervisor to stop cleanly, if one runs, and wait until no
    process mentions the bus any more. Returns the processes still running."""
    try:
        with shmbus.connect(paths.bus, paths.data_dir, autostart=False) as bus:
            bus.stop_supervisor()
    except shmbus.SupervisorUnavailable:
        pass

    def still_running():
        procs = processes_mentioning(paths.bus)
        for proc in procs:
            reap_if_child(proc.pid)
        return processes_mentioning(paths.bus)

    wait_until(lambda: not still_running(), timeout, interval=0.05)
    return still_running()


# How long a clean stop may take before the teardown calls it a leak. Generous:
# the machine is small and noisy, and this is a leak check, not a speed check.
STOP_TIMEOUT = 20.0


def leftovers_after_stop(paths):
    """Stop the bus's supervisor and describe whatever of the bus survives it
    (processes, /dev/shm objects): [] when it left nothing. Stragglers are
    killed and rings unlinked, so one leaky test does not poison the next."""
    problems = []
    survivors = stop_bus(paths, STOP_TIMEOUT)
    if survivors:
        described = []
        for proc in survivors:
            try:
                described.append(f"pid {proc.pid}: {' '.join(proc.cmdline())}")
            except psutil.Error:
                described.append(f"pid {proc.pid}")
        kill_processes(survivors)
        problems.append("processes of the bus still running after a clean stop:\n  " + "\n  ".join(described))
    leftovers = shm_leftovers(paths)
    if leftovers:
        unlink_shm(leftovers)
        problems.append(f"left in /dev/shm after a clean stop: {leftovers}")
    return problems


def kill_processes(procs):
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    for proc in procs:
        wait_gone(proc, 5)


def unlink_shm(names):
    for name in names:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
