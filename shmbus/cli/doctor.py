"""shmbus doctor: what stands between this machine and a working bus, and what to do.

Checks, in order: /dev/shm (there, tmpfs, big enough for the bus's topics: Docker's
64 MiB default is smaller than one default 4-partition topic), the data directory and
the bus's objects in /dev/shm (owner and mode), objects in /dev/shm of buses that no
process uses any more (left by a supervisor killed outright), and the supervisor
(running, answering, errors logged, topics or groups it found broken, partitions the
archiver cannot keep up with). Each finding is a line: ok, warn or FAIL, and for
anything not ok what to do. Exit status 1 if anything FAILed. It never starts a
supervisor and never changes anything.
"""
import glob
import os
import stat
import time

import click

from .._backend.ring import Ring
from .._errors import ShmbusError
from .._fsutil import read_json
from .._link import lock_holder
from .._names import SHM_PREFIX, user_tag
from ._format import human
from ._plumbing import HELP_OPTIONS, bus_options, paths_of

SHM = "/dev/shm"
DEFAULT_TOPIC_BYTES = 4 * (64 << 20)   # `create_topic(partitions=4)` with the default 64 MiB rings


class Report:
    def __init__(self):
        self.worst = "ok"
        self.lines = []

    def add(self, level, what, todo=None):
        self.lines.append((level, what, todo))
        order = ("ok", "warn", "FAIL")
        if order.index(level) > order.index(self.worst):
            self.worst = level

    def print(self):
        for level, what, todo in self.lines:
            style = {"ok": "green", "warn": "yellow", "FAIL": "red"}[level]
            click.echo(click.style(f"{level:>4}", fg=style) + f"  {what}")
            if todo:
                click.echo(f"      -> {todo}")


def _topics_on_disk(paths):
    """{name: topic.json} of the bus's topics, read from the data dir (no supervisor needed)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(paths.topics_dir), "*", "topic.json"))):
        meta = read_json(path)
        if isinstance(meta, dict) and isinstance(meta.get("partitions"), int) \
                and isinstance(meta.get("ring_bytes"), int):
            found[os.path.basename(os.path.dirname(path))] = meta
    return found


def _mapped_shm_names():
    """Names under /dev/shm that some process has mapped or open (the ones we may look at)."""
    names = set()
    for maps in glob.glob("/proc/[0-9]*/maps"):
        try:
            with open(maps) as f:
                for line in f:
                    at = line.find(SHM + "/")
                    if at >= 0:
                        names.add(line[at + len(SHM) + 1:].strip().removesuffix(" (deleted)"))
        except OSError:
            continue
    return names


def check_shm(report, paths, topics):
    if not os.path.isdir(SHM):
        report.add("FAIL", f"{SHM} does not exist", "mount a tmpfs there: mount -t tmpfs -o size=1g tmpfs /dev/shm")
        return
    st = os.statvfs(SHM)
    size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    need = sum(m["partitions"] * Ring.total_bytes(m["ring_bytes"]) for m in topics.values())
    ours = sum(os.path.getsize(os.path.join(SHM, e)) for e in _entries(paths.shm_prefix))
    missing = need - ours   # what the topics still have to reserve when their rings are made
    level = "ok"
    todo = None
    if size < DEFAULT_TOPIC_BYTES:
        level = "warn"
        todo = (f"{SHM} is {human(size)}, smaller than one default 4-partition topic ({human(DEFAULT_TOPIC_BYTES)}):"
                f" in Docker run with --shm-size=1g (or --ipc=host); elsewhere remount it larger "
                f"(mount -o remount,size=1g {SHM}), or create topics with --ring-size 4MiB")
    if missing > free:
        level = "FAIL"
        todo = (f"the bus's topics need {human(missing)} more in {SHM} than is free ({human(free)}): "
                f"enlarge {SHM} (Docker: --shm-size), delete topics, or recreate them with a smaller --ring-size")
    report.add(level, f"{SHM}: {human(size)}, {human(free)} free; bus {paths.bus!r} has {len(topics)} topic(s) "
                      f"needing {human(need)} of rings, {human(ours)} of them in place", todo)


def _entries(prefix):
    try:
        return sorted(e for e in os.listdir(SHM) if e.startswith(prefix))
    except OSError:
        return []


def check_permissions(report, paths):
    uid = os.geteuid()
    try:
        st = os.stat(paths.data_dir)
    except FileNotFoundError:
        report.add("ok", f"data dir {paths.data_dir} does not exist yet (made at the first start)")
        st = None
    if st is not None:
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid != uid:
            report.add("FAIL", f"data dir {paths.data_dir} belongs to uid {st.st_uid}, not you (uid {uid})",
                       "run shmbus as that user, or use a data dir of your own (--data-dir)")
        elif mode & 0o007:
            report.add("FAIL", f"data dir {paths.data_dir} is open to everyone (mode {mode:o})",
                       f"chmod 700 {paths.data_dir} (or share it with one group: shmbus serve --share-group G)")
        else:
            shared = "shared with its group" if mode & 0o070 else "private"
            report.add("ok", f"data dir {paths.data_dir}: yours, mode {mode:o} ({shared})")
    bad = []
    for entry in _entries(paths.shm_prefix):
        try:
            est = os.stat(os.path.join(SHM, entry))
        except FileNotFoundError:
            continue
        if est.st_uid != uid or stat.S_IMODE(est.st_mode) & 0o007:
            bad.append(f"{entry} (uid {est.st_uid}, mode {stat.S_IMODE(est.st_mode):o})")
    if bad:
        report.add("FAIL", f"{len(bad)} object(s) of the bus in {SHM} are not yours or are open to everyone: "
                           f"{', '.join(bad[:3])}", "stop the bus and remove them; find who made them")
    else:
        report.add("ok", f"the bus's objects in {SHM}: {len(_entries(paths.shm_prefix))}, all yours and private")


def check_stale(report):
    """Objects of this user's buses that no process maps: their supervisor is gone
    (killed outright) and nobody started it again. (Another user's processes' maps
    cannot be read, so their objects are not judged.)"""
    mapped = _mapped_shm_names()
    buses: dict = {}
    for entry in _entries(f"{SHM_PREFIX}:{user_tag()}:"):
        parts = entry.split(":")
        if len(parts) < 5:
            continue
        buses.setdefault(":".join(parts[:4]) + ":", []).append(entry)
    for prefix, entries in sorted(buses.items()):
        if any(e in mapped for e in entries):
            continue
        user, bus = prefix.split(":")[1:3]
        size = sum(_size(os.path.join(SHM, e)) for e in entries)
        report.add("warn", f"{len(entries)} object(s), {human(size)}, in {SHM} of bus {bus!r} (user {user}) "
                           f"that no process uses: its supervisor is gone",
                   f"if you still want their records, start that bus again (shmbus serve --bus {bus} "
                   f"--data-dir ITS_DIR adopts and archives them; shmbus stop then removes them); "
                   f"else remove them: rm {SHM}/{prefix}*")
    if not any(level == "warn" and "no process uses" in what for level, what, _ in report.lines):
        report.add("ok", f"no objects in {SHM} of buses whose supervisor is gone")


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def check_supervisor(report, paths):
    import shmbus
    holder = lock_holder(paths)
    if holder is None:
        report.add("ok", f"no supervisor runs for bus {paths.bus!r} (the first client starts one)")
        return
    status = holder.status()
    if status in ("stopped", "tracing-stop", "zombie", "dead"):
        report.add("FAIL", f"the supervisor ({holder.describe()}) holds the bus's lock but cannot answer",
                   f"resume it (kill -CONT {holder.pid}) or kill it; the next client starts a new one")
        return
    started = time.monotonic()
    try:
        with shmbus.connect(paths.bus, paths.data_dir, autostart=False, timeout=5.0) as b:
            snap = b.call("snapshot")
    except ShmbusError as e:
        report.add("FAIL", f"the supervisor ({holder.describe()}) does not answer: {e}",
                   f"look at {paths.log_file}; kill it (kill {holder.pid}) and the next client starts a new one")
        return
    took = (time.monotonic() - started) * 1000
    sup = snap["supervisor"]
    uptime = (snap["taken_ns"] - sup["started_ns"]) / 1e9
    report.add("ok", f"supervisor pid {sup['pid']} answers ({took:.0f} ms), up {uptime:.0f} s")
    if sup["errors"]:
        report.add("warn", f"the supervisor logged {sup['errors']} error(s) since it started",
                   f"read them: grep -i error {paths.log_file}")
    for name, why in snap.get("broken_topics", {}).items():
        report.add("FAIL", f"topic {name} is broken: {why}", f"repair that file and restart, or shmbus topics delete {name}")
    for name, d in snap["topics"].items():
        for p in d["partitions"]:
            if p.get("archive_error"):
                report.add("FAIL", f"{name}/{p['partition']}: the archiver fails: {p['archive_error']}",
                           "free disk space in the data dir's file system, or fix its permissions")
            elif "archive_lag" in p and p["ring_bytes"] and p["ring_used_bytes"] > 0.9 * p["ring_bytes"] \
                    and p["archive_lag"] > 0:
                report.add("warn", f"{name}/{p['partition']}: the ring is {100 * p['ring_used_bytes'] / p['ring_bytes']:.0f}% "
                                   f"full of records not yet on disk: producers will block",
                           "a faster disk, or a larger ring (--ring-size) to ride out bursts")
            if p.get("damage"):
                report.add("warn", f"{name}/{p['partition']}: damage in the log: {'; '.join(p['damage'])}",
                           "readers get CorruptSegment there; see the README's 'The durable log'")
    for name, d in snap.get("groups", {}).items():
        if d.get("error"):
            report.add("FAIL", f"group {name} is broken: {d['error']}", f"shmbus groups delete {name}")


@click.command(context_settings=HELP_OPTIONS)
@bus_options
def doctor(bus, data_dir):
    """Check /dev/shm, permissions, leftovers of dead buses and the supervisor; say what to do."""
    paths = paths_of(bus, data_dir)
    report = Report()
    topics = _topics_on_disk(paths)
    check_shm(report, paths, topics)
    check_permissions(report, paths)
    check_stale(report)
    check_supervisor(report, paths)
    report.print()
    summary = {"ok": "all good", "warn": "usable, with warnings", "FAIL": "problems found"}[report.worst]
    click.echo(f"bus {paths.bus!r} at {paths.data_dir}: {summary}")
    if report.worst == "FAIL":
        raise SystemExit(1)
