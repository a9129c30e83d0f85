"""A chaos soak: producers, group members and the supervisor are SIGKILLed and SIGSTOPped
at random while records flow, some producers live in a pid namespace of their own; then
a full audit. Run by tests/crash/test_chaos_soak.py for about a minute, and by
tests/soak/soak.py for as long as you like.

The audit, from a fresh consumer reading every partition from the start:
- every record a producer saw acknowledged (send returned) is there, exactly once;
- nothing else is (no garbage, no record whose send raised ClaimRevoked);
- each producer's records keep their order in each partition;
- the group's members handled every record at least once (at-least-once), and its
  committed offsets never passed a record nobody handled;
- nothing is wedged: afterwards a record sent to each partition is read back.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
sys.path.insert(0, TESTS)

import shmbus  # noqa: E402

import buskit  # noqa: E402

PRODUCER = os.path.join(HERE, "soak_producer.py")
MEMBER = os.path.join(TESTS, "groups", "group_member.py")
UNSHARE = shutil.which("unshare")
TOPIC = "soak"
GROUP = "soakers"


@dataclass
class Figures:
    """What a soak did and found."""

    seconds: float = 0.0
    events: Dict[str, int] = field(default_factory=dict)   # kind of kill or stall -> how many
    acknowledged: int = 0
    present: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    garbage: int = 0
    revoked: int = 0
    unhandled_by_group: int = 0
    wedged: int = 0
    problems: List[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.reordered or self.garbage or self.unhandled_by_group
                    or self.wedged or self.problems)


def parse_value(value: bytes):
    """(tag, seq) of a soak value `tag:seq:xxxx`, or None if it is not one."""
    try:
        tag, seq, fill = value.decode("ascii").split(":")
        if fill != "x" * len(fill):
            return None
        return tag, int(seq)
    except (UnicodeDecodeError, ValueError):
        return None


class Soak:
    def __init__(self, paths, workdir: str, seconds: float, producers: int = 3, members: int = 2,
                 seed: Optional[int] = None, pid_namespaces: bool = True, log=print):
        self.paths = paths
        self.workdir = workdir
        self.seconds = seconds
        self.n_producers = producers
        self.n_members = members
        self.rng = random.Random(seed)
        self.pid_namespaces = pid_namespaces and UNSHARE is not None and os.geteuid() == 0
        self.log = log
        self.figures = Figures()
        self.procs: Dict[str, subprocess.Popen] = {}   # name -> process
        self.stop_file = os.path.join(workdir, "stop")
        self.started = 0
        os.makedirs(workdir, exist_ok=True)

    # ---- processes ----

    def _spawn(self, kind: str, argv: List[str], in_namespace: bool = False) -> str:
        self.started += 1
        name = f"{kind}{self.started}"
        launcher = [UNSHARE, "--pid", "--fork", "--kill-child", "--mount-proc"] if in_namespace else []
        err = open(os.path.join(self.workdir, f"{name}.stderr"), "wb")
        try:
            self.procs[name] = subprocess.Popen([*launcher, sys.executable, *argv(name)], stdin=subprocess.DEVNULL,
                                                stdout=err, stderr=err, close_fds=True)
        finally:
            err.close()
        return name

    def start_producer(self) -> str:
        in_ns = self.pid_namespaces and self.rng.random() < 0.3
        freeze = self.rng.random() < 0.3

        def argv(name):
            return [PRODUCER, json.dumps({"bus": self.paths.bus, "data_dir": self.paths.data_dir, "topic": TOPIC,
                                          "tag": name, "workdir": self.workdir, "stop_file": self.stop_file,
                                          "seed": self.rng.randrange(1 << 30), "freeze": freeze})]
        return self._spawn("p", argv, in_ns)

    def start_member(self) -> str:
        def argv(name):
            return [MEMBER, json.dumps({"bus": self.paths.bus, "data_dir": self.paths.data_dir, "group": GROUP,
                                        "topics": [TOPIC], "name": name, "workdir": self.workdir,
                                        "stop_file": self.stop_file, "max_records": 200,
                                        "max_poll_interval": 30.0})]
        return self._spawn("m", argv)

    def _inner(self, name: str) -> psutil.Process:
        """The process to signal: the child unshare started, if it started one."""
        proc = psutil.Process(self.procs[name].pid)
        kids = proc.children()
        return kids[0] if kids and "unshare" in proc.name() else proc

    def _signal(self, name: str, sig: int) -> None:
        try:
            self._inner(name).send_signal(sig)
        except psutil.Error:
            pass

    def _stopped(self, name: str) -> bool:
        try:
            return self._inner(name).status() == psutil.STATUS_STOPPED
        except psutil.Error:
            return False

    def _count(self, kind: str) -> None:
        self.figures.events[kind] = self.figures.events.get(kind, 0) + 1

    # ---- the run ----

    def run(self) -> Figures:
        with shmbus.connect(self.paths.bus, self.paths.data_dir) as bus:
            bus.create_topic(TOPIC, partitions=4, ring_bytes=1 << 20, durable=True)
        for _ in range(self.n_producers):
            self.start_producer()
        for _ in range(self.n_members):
            self.start_member()
        started = time.monotonic()
        stopped: Dict[str, float] = {}   # name -> when to SIGCONT it
        while time.monotonic() - started < self.seconds:
            time.sleep(self.rng.uniform(0.3, 1.0))
            now = time.monotonic()
            for name in self.procs:   # producers that froze themselves mid-record: wake them later
                if name.startswith("p") and name not in stopped and self._stopped(name):
                    stopped[name] = now + self.rng.uniform(1.5, 3.0)
                    self._count("producer froze itself mid-record")
            for name, until in list(stopped.items()):
                if now >= until:
                    self._signal(name, signal.SIGCONT)
                    del stopped[name]
            producers = [n for n in self.procs if n.startswith("p") and self.procs[n].poll() is None
                         and n not in stopped]
            members = [n for n in self.procs if n.startswith("m") and self.procs[n].poll() is None]
            roll = self.rng.random()
            if roll < 0.3 and producers:
                victim = self.rng.choice(producers)
                self._signal(victim, signal.SIGKILL)
                self._count("producer SIGKILL")
                self.start_producer()
            elif roll < 0.5 and producers:
                victim = self.rng.choice(producers)
                self._signal(victim, signal.SIGSTOP)
                stopped[victim] = now + self.rng.uniform(0.5, 3.0)
                self._count("producer SIGSTOP")
            elif roll < 0.7 and members:
                victim = self.rng.choice(members)
                self._signal(victim, signal.SIGKILL)
                self._count("group member SIGKILL")
                self.start_member()
            elif roll < 0.8:
                supervisor = buskit.supervisor_process(self.paths)
                if supervisor is not None:
                    supervisor.kill()
                    buskit.wait_gone(supervisor, 10)
                    self._count("supervisor SIGKILL")
                    with shmbus.connect(self.paths.bus, self.paths.data_dir):   # autostart its successor
                        pass
        # The end: everyone still running stops on its own (producers flush first). A
        # freezing producer may stop itself again after its last SIGCONT (its freezer
        # thread sees the stop file only between freezes): wake whoever is stopped until
        # all have exited.
        with open(self.stop_file, "w"):
            pass
        deadline = time.monotonic() + 60
        while any(proc.poll() is None for proc in self.procs.values()) and time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is None and self._stopped(name):
                    self._signal(name, signal.SIGCONT)
            time.sleep(0.05)
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.figures.problems.append(f"{name} did not stop")
                self._signal(name, signal.SIGKILL)
                proc.wait(10)
        self.figures.seconds = time.monotonic() - started
        self.audit()
        return self.figures

    def kill_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self._signal(name, signal.SIGCONT)
                self._signal(name, signal.SIGKILL)
                try:
                    proc.kill()
                    proc.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    pass

    # ---- the audit ----

    def _acknowledged(self):
        """{tag: highest seq acknowledged}, {tag: revoked seqs}."""
        acked, revoked = {}, {}
        for name in self.procs:
            if not name.startswith("p"):
                continue
            path = os.path.join(self.workdir, f"{name}.acked")
            if os.path.exists(path):
                with open(path) as f:
                    lines = [line for line in f if line.endswith("\n")]
                if lines:
                    acked[name] = int(lines[-1])
            path = os.path.join(self.workdir, f"{name}.revoked")
            if os.path.exists(path):
                with open(path) as f:
                    revoked[name] = {int(line) for line in f if line.endswith("\n")}
        return acked, revoked

    def audit(self) -> None:
        f = self.figures
        acked, revoked = self._acknowledged()
        f.acknowledged = sum(n + 1 for n in acked.values()) - sum(len(r) for r in revoked.values())
        f.revoked = sum(len(r) for r in revoked.values())
        with shmbus.connect(self.paths.bus, self.paths.data_dir) as bus:
            ends = {p.partition: p.end_offset for p in bus.describe_topic(TOPIC).partitions}
            seen: Dict[tuple, int] = {}
            last_seq: Dict[tuple, int] = {}
            with bus.consumer(TOPIC, auto_offset_reset="earliest") as c:
                positions = {p: 0 for p in ends}
                deadline = time.monotonic() + 120
                while any(positions[p] < ends[p] for p in ends) and time.monotonic() < deadline:
                    for m in c.poll_many(5000, timeout=1.0):
                        positions[m.partition] = m.offset + 1
                        parsed = parse_value(m.value)
                        if parsed is None:
                            f.garbage += 1
                            continue
                        seen[parsed] = seen.get(parsed, 0) + 1
                        key = (parsed[0], m.partition)
                        if parsed[1] <= last_seq.get(key, -1):
                            f.reordered += 1
                        last_seq[key] = parsed[1]
                if any(positions[p] < ends[p] for p in ends):
                    f.problems.append(f"could not read to the end: at {positions}, ends {ends}")
            f.present = len(seen)
            f.duplicated = sum(n - 1 for n in seen.values() if n > 1)
            for tag, top in acked.items():
                for seq in range(top + 1):
                    if seq in revoked.get(tag, ()):
                        if (tag, seq) in seen:
                            f.problems.append(f"{tag}:{seq} was revoked but is in the log")
                    elif (tag, seq) not in seen:
                        f.lost += 1
            # The group: every record handled by some member at least once.
            handled = set()
            for name in self.procs:
                if name.startswith("m"):
                    path = os.path.join(self.workdir, f"{name}.records")
                    if os.path.exists(path):
                        with open(path) as fh:
                            for line in fh:
                                if line.endswith("\n"):
                                    parsed = parse_value(line.split()[3].encode())
                                    if parsed is not None:
                                        handled.add(parsed)
            committed = {p["partition"]: p["committed"]
                         for p in bus.call("describe_group", group=GROUP)["partitions"]}
            # Records below the committed offsets were handled (the rest a member may not
            # have reached yet when the soak ended).
            with bus.consumer(TOPIC, auto_offset_reset="earliest") as c:
                below = 0
                while True:
                    batch = c.poll_many(5000, timeout=0.5)
                    if not batch:
                        break
                    for m in batch:
                        if committed.get(m.partition) is not None and m.offset < committed[m.partition]:
                            parsed = parse_value(m.value)
                            if parsed is not None and parsed not in handled:
                                below += 1
                f.unhandled_by_group = below
            # Nothing wedged: a record to each partition arrives.
            with bus.producer(timeout=10) as p, bus.consumer(TOPIC, auto_offset_reset="latest") as c:
                for tp in c.assignment():
                    c.position(tp)
                for partition in ends:
                    p.send(TOPIC, b"final:%d:" % partition, partition=partition)
                got = set()
                deadline = time.monotonic() + 20
                while len(got) < len(ends) and time.monotonic() < deadline:
                    got |= {m.partition for m in c.poll_many(100, timeout=0.5) if m.value.startswith(b"final")}
                f.wedged = len(ends) - len(got)
