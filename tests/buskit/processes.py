"""Child processes running the roles of buskit/child.py, and the CLI run as a
subprocess. Every command line carries the bus name, so the leak check finds a child
that outlives its test."""
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD_SCRIPT = os.path.join(HERE, "child.py")


class Child:
    """One child process running a role of buskit/child.py. Its command line
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

    def start(self, role, launcher=(), **args):
        """Start a child running `role`. `launcher`: a command line to run it under
        (say, in a pid namespace of its own)."""
        self._count += 1
        name = f"{role}-{self._count}"
        args = dict(args, bus=self.paths.bus, data_dir=self.paths.data_dir, role=role)
        args.setdefault("ready_file", os.path.join(self.workdir, f"{name}.ready"))
        args.setdefault("out", os.path.join(self.workdir, f"{name}.out.json"))
        stdout = open(os.path.join(self.workdir, f"{name}.stdout"), "wb")
        stderr = open(os.path.join(self.workdir, f"{name}.stderr"), "wb")
        try:
            popen = subprocess.Popen([*launcher, sys.executable, CHILD_SCRIPT, json.dumps(args)],
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


def freeze(pid, timeout=10.0):
    """SIGSTOP pid and return once every one of its threads has stopped. kill() returns
    before the stop lands: a thread running on the other core goes on for a moment (the
    supervisor's archiver once archived ~800 more records there), so a test that needs
    the process frozen waits for it."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        states = []
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                    states.append(stat.read().rpartition(")")[2].split()[0])
        except FileNotFoundError:   # a thread ended meanwhile: look again
            continue
        if states and all(state in "tT" for state in states):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"pid {pid} did not stop within {timeout} s (thread states {states})")
        time.sleep(0.0005)


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
