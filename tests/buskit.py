"""Helpers shared by the test suite and the child processes it starts.

Kept apart from conftest.py so that child scripts (tests/buskit_child.py) can
import the same record format the tests check, and so test modules import
helpers explicitly instead of reaching into conftest.
"""
import errno
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import psutil

import shmbus
from shmbus._config import BusPaths

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD_SCRIPT = os.path.join(HERE, "buskit_child.py")


# ---------------------------------------------------------------------------
# Record values that prove their own integrity
# ---------------------------------------------------------------------------

def make_value(tag, seq, size=0):
    """A value that names its sender, sequence number and length, and fills the
    rest with bytes derived from them, so a torn, shifted or stale copy never
    passes check_value. `size` is a minimum: the header alone may be longer."""
    size = max(size, len(f"{tag}:{seq}:0000000000:"))
    head = f"{tag}:{seq}:{size:010d}:".encode()
    fill = size - len(head)
    pattern = hashlib.blake2b(head, digest_size=16).digest()
    return head + (pattern * (fill // 16 + 1))[:fill]


def check_value(value):
    """(tag, seq) of a make_value value; ValueError if it is not exactly one."""
    if not isinstance(value, bytes):
        raise ValueError(f"value is {type(value).__name__}, not bytes")
    try:
        tag, seq, size, _ = value.split(b":", 3)
        seq, size = int(seq), int(size)
    except ValueError:
        raise ValueError(f"garbage value {value[:60]!r}") from None
    if len(value) != size or make_value(tag.decode(), seq, size) != value:
        raise ValueError(f"torn or corrupt value {value[:60]!r} (len {len(value)}, header says {size})")
    return tag.decode(), seq


M32 = 0xFFFFFFFF


def reference_murmur2(data):
    """A straight port of org.apache.kafka.common.utils.Utils.murmur2 (Java
    ints made explicit: 32-bit wrap, >>> as an unsigned shift)."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & M32
    for i in range(length // 4):
        k = data[4 * i] | data[4 * i + 1] << 8 | data[4 * i + 2] << 16 | data[4 * i + 3] << 24
        k = (k * m) & M32
        k ^= k >> r
        k = (k * m) & M32
        h = (h * m) & M32
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & M32
    h ^= h >> 13
    h = (h * m) & M32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


# ---------------------------------------------------------------------------
# A bus per test, and what it leaves behind
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Reading and measuring
# ---------------------------------------------------------------------------

def read_exact(consumer, count, timeout=10.0):
    """Exactly `count` records from consumer (fails if fewer arrive in time).
    Reads no further than asked, so the caller can check what comes next."""
    messages = []
    deadline = time.monotonic() + timeout
    while len(messages) < count and time.monotonic() < deadline:
        messages.extend(consumer.poll_many(count - len(messages), timeout=0.2))
    assert len(messages) == count, f"got {len(messages)} of {count} records within {timeout}s"
    return messages


def cpu_seconds(proc):
    times = proc.cpu_times()
    return times.user + times.system


# ---------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------

class Child:
    """One child process running a role of buskit_child.py. Its command line
    carries the bus name, so the leak check finds it if it outlives its test."""

    def __init__(self, popen, name, workdir):
        self.popen = popen
        self.name = name
        self.workdir = workdir

    @property
    def pid(self):
        return self.popen.pid

    def file(self, suffix):
        return os.path.join(self.workdir, f"{self.name}.{suffix}")

    @property
    def ready_file(self):
        return self.file("ready")

    @property
    def out_file(self):
        return self.file("out.json")

    def stderr(self):
        try:
            with open(self.file("stderr"), errors="replace") as f:
                return f.read()[-4000:]
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout=20.0):
        """Wait for the child's ready file; fail early if it died first."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.ready_file):
            code = self.popen.poll()
            if code is not None:
                raise AssertionError(f"child {self.name} exited with {code} before ready:\n{self.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"child {self.name} not ready after {timeout}s:\n{self.stderr()}")
            time.sleep(0.01)

    def wait(self, timeout=60.0, expect_code=0):
        """Wait for exit; kill it on timeout. Returns the parsed out file, if any."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"child {self.name} still running after {timeout}s:\n{self.stderr()}") from None
        if expect_code is not None and code != expect_code:
            raise AssertionError(f"child {self.name} exited with {code}, expected {expect_code}:\n{self.stderr()}")
        return self.result()

    def result(self):
        try:
            with open(self.out_file) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def kill(self):
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def alive(self):
        return self.popen.poll() is None


class Children:
    """Starts children for one test and kills whatever is left at teardown."""

    def __init__(self, paths, workdir):
        self.paths = paths
        self.workdir = workdir
        self.children = []
        self._count = 0
        os.makedirs(workdir, exist_ok=True)

    def start(self, role, **args):
        self._count += 1
        name = f"{role}-{self._count}"
        args = dict(args, bus=self.paths.bus, data_dir=self.paths.data_dir, role=role)
        args.setdefault("ready_file", os.path.join(self.workdir, f"{name}.ready"))
        args.setdefault("out", os.path.join(self.workdir, f"{name}.out.json"))
        stdout = open(os.path.join(self.workdir, f"{name}.stdout"), "wb")
        stderr = open(os.path.join(self.workdir, f"{name}.stderr"), "wb")
        try:
            popen = subprocess.Popen([sys.executable, CHILD_SCRIPT, json.dumps(args)],
                                     stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                     close_fds=True)
        finally:
            stdout.close()
            stderr.close()
        child = Child(popen, name, self.workdir)
        self.children.append(child)
        return child

    def kill_all(self):
        for child in self.children:
            if child.popen.poll() is None:
                child.popen.kill()
        for child in self.children:
            try:
                child.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass


def run_cli(paths, *args, stdin=None, timeout=60, env=None):
    """Run `python -m shmbus ARGS --bus B --data-dir D` and return the CompletedProcess."""
    cmd = [sys.executable, "-m", "shmbus", *args]
    if paths is not None:
        cmd += ["--bus", paths.bus, "--data-dir", paths.data_dir]
    full_env = dict(os.environ)
    full_env.pop("SHMBUS_BUS", None)
    full_env.pop("SHMBUS_DATA_DIR", None)
    full_env.update(env or {})
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout, env=full_env)




class Collector(threading.Thread):
    """A consumer reading one partition on a thread of the test process, so the
    test can ask "has a record from X arrived since T?" while it goes on killing
    things. Every value is checked as it arrives."""

    def __init__(self, bus, topic):
        super().__init__(name=f"collector-{topic}", daemon=True)
        self.consumer = bus.consumer(topic, auto_offset_reset="earliest")
        for tp in self.consumer.assignment():
            self.consumer.position(tp)   # start at the earliest offset now, not later
        self.records = []                # (partition, offset, tag, seq, timestamp_ns)
        self.garbage = []
        self.counts = {}                 # tag -> records received
        self.latest = {}                 # first letter of the tag -> newest timestamp_ns received
        self.error = None
        self.missed = None
        self._cond = threading.Condition()
        self._stopping = threading.Event()

    def run(self):
        try:
            while not self._stopping.is_set():
                batch = self.consumer.poll_many(2000, timeout=0.1)
                with self._cond:
                    for m in batch:
                        try:
                            tag, seq = check_value(m.value)
                        except ValueError as e:
                            self.garbage.append(f"{m.partition}@{m.offset}: {e}")
                            continue
                        self.records.append((m.partition, m.offset, tag, seq, m.timestamp_ns))
                        self.counts[tag] = self.counts.get(tag, 0) + 1
                        kind = tag[0]
                        self.latest[kind] = max(self.latest.get(kind, 0), m.timestamp_ns)
                    self._cond.notify_all()
        except BaseException as e:  # reported by the test, not lost on the thread
            self.error = e
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, predicate, timeout):
        """Wait until predicate(self) holds (under the lock); returns whether it did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.error is not None:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self):
        """Stop reading (again: a no-op); afterwards self.missed holds what the
        consumer missed. Raises what the reading thread raised, if anything."""
        if self.missed is None:
            self._stopping.set()
            self.join(10)
            self.missed = self.consumer.missed()
            self.consumer.close()
        if self.error is not None:
            raise self.error
