"""Helpers of the group tests: member processes (group_member.py) on the test's
bus, and ways to read what they and the coordinator did."""
import collections
import json
import os
import signal
import subprocess
import sys
import time

import buskit
import shmbus

MEMBER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "group_member.py")


class Member:
    """One member process."""

    def __init__(self, popen, name, workdir, stop_file):
        self.popen = popen
        self.name = name
        self.workdir = workdir
        self.stop_file = stop_file

    @property
    def pid(self):
        return self.popen.pid

    def path(self, suffix):
        return os.path.join(self.workdir, f"{self.name}.{suffix}")

    def state(self):
        try:
            with open(self.path("state")) as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def assignment(self):
        state = self.state()
        return {tuple(tp) for tp in state["assignment"]} if state else set()

    def records(self):
        """[(topic, partition, offset, value)] in the order it handled them."""
        try:
            with open(self.path("records")) as f:
                # A SIGKILL can tear the last write: its records were not committed.
                rows = [line.split() for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []
        return [(t, int(p), int(o), v) for t, p, o, v in rows]

    def stderr(self):
        try:
            with open(self.path("stderr"), errors="replace") as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.popen.poll() is None

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout=20.0):
        """Ask it to close (commit, leave) and exit; fail if it does not, or fails."""
        open(self.stop_file, "w").close()
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"member {self.name} did not stop:\n{self.stderr()}") from None
        assert code == 0, f"member {self.name} exited with {code}:\n{self.stderr()}"


class Members:
    def __init__(self, paths, workdir):
        self.paths = paths
        self.workdir = workdir
        self.started = []
        os.makedirs(workdir, exist_ok=True)

    def start(self, group, topics, launcher=(), **options):
        name = f"m{len(self.started) + 1}"
        stop_file = os.path.join(self.workdir, f"{name}.stop")
        args = dict(options, bus=self.paths.bus, data_dir=self.paths.data_dir, group=group,
                    topics=list(topics), name=name, workdir=self.workdir, stop_file=stop_file)
        stderr = open(os.path.join(self.workdir, f"{name}.stderr"), "wb")
        try:
            popen = subprocess.Popen([*launcher, sys.executable, MEMBER_SCRIPT, json.dumps(args)],
                                     stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, close_fds=True)
        finally:
            stderr.close()
        member = Member(popen, name, self.workdir, stop_file)
        self.started.append(member)
        return member

    def kill_all(self):
        for member in self.started:
            if member.alive():
                member.popen.kill()
        for member in self.started:
            try:
                member.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass


def describe(bus, group):
    return bus.call("describe_group", group=group)


def owners(description):
    """{(topic, partition): member_id} from a describe_group reply (None: no owner)."""
    return {(p["topic"], p["partition"]): p["member_id"] for p in description["partitions"]}


def wait_stable(bus, group, live, partitions, timeout=15.0):
    """Wait until the group is Stable with exactly the `live` member processes, every
    one of `partitions` held by exactly one of them, and every member's own view
    (its state file) agreeing with the coordinator's. Returns {member: set(tp)}."""
    live_pids = {m.pid for m in live}
    last = {}

    def settled():
        try:
            d = describe(bus, group)
        except shmbus.ShmbusError:  # no member joined yet
            return None
        last["describe"] = d
        if d["state"] != "Stable" or {m["pid"] for m in d["members"]} != live_pids:
            return None
        if len(d["members"]) != len(live):
            return None
        held = {}
        for m in d["members"]:
            for tp in m["assignment"]:
                if tuple(tp) in held:
                    return None
                held[tuple(tp)] = m["pid"]
        if set(held) != set(partitions):
            return None
        views = {}
        for member in live:
            state = member.state()
            if state is None or state["generation"] != d["generation"]:
                return None
            views[member] = {tuple(tp) for tp in state["assignment"]}
            if views[member] != {tp for tp, pid in held.items() if pid == member.pid}:
                return None
        return views

    result = buskit.wait_until(settled, timeout, interval=0.05)
    if not result:
        dead = [f"{m.name}: {m.stderr()}" for m in live if not m.alive()]
        raise AssertionError(f"group {group} did not settle in {timeout}s: {last.get('describe')}\n"
                             + "\n".join(dead))
    return result


def produce(bus, topic, partitions, per_partition, start=0):
    """Send per_partition records to each partition; value 'p<partition>-<seq>'."""
    with bus.producer() as p:
        for seq in range(start, start + per_partition):
            for partition in range(partitions):
                p.send(topic, f"p{partition}-{seq}".encode(), partition=partition)


def ends(bus, topic):
    return {p.partition: p.end_offset for p in bus.describe_topic(topic).partitions}


def wait_committed(bus, group, topic, targets, timeout=20.0):
    """Wait until the group's committed offsets on topic reach targets {partition: offset}."""
    def done():
        rows = bus.call("group_committed", group=group, partitions=[[topic, p] for p in targets])
        return all(offset is not None and offset >= targets[p] for _, p, offset in rows)
    assert buskit.wait_until(done, timeout, interval=0.05), \
        f"committed offsets of {group} did not reach {targets}: {describe(bus, group)['partitions']}"


def wait_file(path, timeout=20.0):
    assert buskit.wait_until(lambda: os.path.exists(path), timeout), f"{path} never appeared"


def now():
    return time.monotonic()


def check_every_record_handled(member_list, end_offsets, topic="t"):
    """Every offset below the end was handled by somebody (at least once), each
    with the value that was sent there. Returns {(partition, offset): times handled}."""
    handled = collections.Counter()
    for member in member_list:
        for t, partition, offset, value in member.records():
            assert t == topic
            assert value == f"p{partition}-{offset}", f"{member.name} read {value} at {partition}/{offset}"
            handled[(partition, offset)] += 1
    for partition, end in end_offsets.items():
        missing = [o for o in range(end) if (partition, o) not in handled]
        assert not missing, f"partition {partition}: offsets never handled: {missing[:20]} ({len(missing)})"
    return handled
