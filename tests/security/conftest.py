"""Security tests: attacks run by real second Unix users.

The tests run as root (they skip elsewhere): they create throwaway users and a group
with useradd/groupadd, run the attacker's steps as those users (a subprocess that drops
to their uid and groups before it runs), and remove the users, the group and all that
the attackers made at teardown. An attacker runs only the system's own Python with its
standard library (/usr/bin/python3) or plain commands: what any local user has.
"""
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile

import pytest

import buskit

ATTACKER_PYTHON = "/usr/bin/python3"


def _require_root():
    if os.geteuid() != 0:
        pytest.skip("needs root, to create the second user that attacks")
    if not shutil.which("useradd"):
        pytest.skip("needs useradd")


class User:
    """A throwaway Unix user, and running things as it."""

    def __init__(self, name):
        self.name = name
        entry = pwd.getpwnam(name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        self.started = []   # what popen started, killed (by pid) at teardown

    def _become(self):
        os.setgroups(os.getgrouplist(self.name, self.gid))
        os.setgid(self.gid)
        os.setuid(self.uid)

    def popen(self, argv, **kwargs):
        kwargs.setdefault("cwd", "/")
        kwargs.setdefault("env", {"PATH": "/usr/bin:/bin", "HOME": "/"})
        process = subprocess.Popen(argv, preexec_fn=self._become, **kwargs)
        self.started.append(process)
        return process

    def kill_started(self):
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        self.started.clear()

    def run(self, argv, timeout=30, check=True, **kwargs):
        kwargs.setdefault("cwd", "/")
        kwargs.setdefault("env", {"PATH": "/usr/bin:/bin", "HOME": "/"})
        done = subprocess.run(argv, preexec_fn=self._become, capture_output=True, timeout=timeout, **kwargs)
        if check and done.returncode != 0:
            raise AssertionError(f"{argv} as {self.name} failed ({done.returncode}): {done.stderr.decode()}")
        return done

    def python(self, code, *args, **kwargs):
        """Run stdlib-only Python code as this user."""
        return self.run([ATTACKER_PYTHON, "-c", code, *args], **kwargs)


def _useradd(name, *extra):
    subprocess.run(["useradd", "-M", "-N", "-s", "/usr/sbin/nologin", *extra, name], check=True,
                   capture_output=True)


def _userdel(name):
    subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture(scope="module")
def attacker():
    """Another local user, who wants in."""
    _require_root()
    name = f"shmbus-test-{secrets.token_hex(4)}"
    _useradd(name)
    user = User(name)
    try:
        yield user
    finally:
        user.kill_started()
        _userdel(name)


@pytest.fixture(scope="module")
def share_group():
    """A throwaway Unix group and a user who is a member of it (a supplementary
    group: its primary group is another), as `shmbus serve --share-group` shares with."""
    _require_root()
    group = f"shmbus-tg-{secrets.token_hex(4)}"
    member = f"shmbus-test-{secrets.token_hex(4)}"
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    try:
        _useradd(member, "-G", group)
        user = User(member)
        try:
            yield group, user
        finally:
            user.kill_started()
            _userdel(member)
    finally:
        subprocess.run(["groupdel", group], capture_output=True)


@pytest.fixture
def open_dir():
    """A directory under /tmp that other users may enter (0755), removed at teardown:
    what the attackers read or where they can reach a bus."""
    path = tempfile.mkdtemp(prefix="shmbus-sec-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def reachable_paths(open_dir):
    """Like bus_paths, but the data dir is where other users can reach it (its own mode
    decides who gets in). Teardown checks that nothing of the bus is left."""
    paths = buskit.new_paths(buskit.unique_bus_name(), os.path.join(open_dir, "data"))
    yield paths
    problems = buskit.leftovers_after_stop(paths)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
