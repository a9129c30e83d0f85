"""Consumer groups: three processes share a topic's partitions; one is SIGKILLed;
the others take its partitions over from the last committed offsets.

    python examples/consumer_group.py [--runs 5]

Runs on a private bus in a temporary data directory (stopped and removed at the
end), with a producer process streaming records to every partition. Each run
starts three members, kills one of them with SIGKILL, and measures the time from
the kill to the first record of its partitions being handled by a survivor. At
the end it checks that every record was handled at least once and prints the
median time.
"""
import argparse
import fcntl
import multiprocessing
import os
import shutil
import signal
import statistics
import tempfile
import time

import shmbus

BUS = "example-groups"
TOPIC = "events"
GROUP = "dashboard"
PARTITIONS = 6


def member(data_dir, name, log_path, stop_path):
    """One group member: handle records, then commit what was handled (at-least-once).
    A handled record is a line "<monotonic time> <partition> <offset>" in log_path."""
    def show(what, partitions):
        print(f"  {name}: {what} {sorted(tp.partition for tp in partitions)}", flush=True)

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with shmbus.connect(BUS, data_dir, autostart=False) as bus, \
            bus.consumer(TOPIC, group=GROUP, auto_offset_reset="earliest", sticky=True,
                         on_assign=lambda tps: show("assigned", tps),
                         on_revoke=lambda tps: show("revoked", tps)) as consumer:
        while not os.path.exists(stop_path):
            batch = consumer.poll_many(200, timeout=0.1)
            if batch:
                now = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process
                os.write(fd, "".join(f"{now} {m.partition} {m.offset}\n" for m in batch).encode())
                try:
                    consumer.commit()
                except shmbus.CommitFailed:
                    pass  # a rebalance moved a partition away: its new owner reads it again
    os.close(fd)


def producer(data_dir, stop_path):
    """Stream small records to every partition, about 20,000 a second."""
    with shmbus.connect(BUS, data_dir, autostart=False) as bus, bus.producer() as p:
        seq = 0
        while not os.path.exists(stop_path):
            for partition in range(PARTITIONS):
                p.send_many(TOPIC, [b"event-%d" % (seq + i) for i in range(10)], partition=partition)
            seq += 10
            time.sleep(0.003)


def describe(bus):
    return bus.call("describe_group", group=GROUP)


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)


def handled_after(log_paths, partitions, since):
    """The earliest time after `since` at which one of log_paths handled a record of partitions."""
    first = None
    for path in log_paths:
        try:
            with open(path) as f:
                for line in f:
                    if not line.endswith("\n"):
                        break
                    t, partition, _ = line.split()
                    if int(partition) in partitions and float(t) > since:
                        first = float(t) if first is None else min(first, float(t))
                        break
        except FileNotFoundError:
            pass
    return first


def one_run(bus, data_dir, workdir, run, spawn):
    print(f"run {run + 1}: starting three members")
    procs, logs = {}, {}
    stop_path = os.path.join(workdir, f"run{run}.stop")
    for i in range(3):
        name = f"member-{run + 1}.{i + 1}"
        logs[name] = os.path.join(workdir, f"{name}.log")
        procs[name] = spawn.Process(target=member, args=(data_dir, name, logs[name], stop_path))
        procs[name].start()
    pids = {proc.pid: name for name, proc in procs.items()}

    def stable():
        try:
            d = describe(bus)
        except shmbus.ShmbusError:  # nobody joined yet
            return None
        held = [tuple(tp) for m in d["members"] for tp in m["assignment"]]
        return (d["state"] == "Stable" and {m["pid"] for m in d["members"]} == set(pids)
                and len(held) == PARTITIONS and d)
    d = wait_until(stable, 30, "three members to share the partitions")
    time.sleep(0.3)  # let them consume for a moment

    victim = max(d["members"], key=lambda m: len(m["assignment"]))
    victim_name = pids[victim["pid"]]
    victim_partitions = {p for _, p in victim["assignment"]}
    survivors = [logs[name] for name in procs if name != victim_name]
    print(f"run {run + 1}: SIGKILL {victim_name} (pid {victim['pid']}), which reads partitions "
          f"{sorted(victim_partitions)}")
    killed = time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    resumed = wait_until(lambda: handled_after(survivors, victim_partitions, killed), 10,
                         "the survivors to read the victim's partitions")
    recovery = resumed - killed
    print(f"run {run + 1}: its partitions were being read again {recovery * 1000:.0f} ms after the kill")

    open(stop_path, "w").close()
    for proc in procs.values():
        proc.join(10)
    return recovery, list(logs.values())


def check_nothing_skipped(bus, all_logs):
    ends = {p.partition: p.end_offset for p in bus.describe_topic(TOPIC).partitions}
    committed = {p["partition"]: p["committed"] for p in describe(bus)["partitions"]}
    seen = set()
    total = 0
    for path in all_logs:
        with open(path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a write torn by the SIGKILL: those records were not committed
                _, partition, offset = line.split()
                seen.add((int(partition), int(offset)))
                total += 1
    for partition in range(PARTITIONS):
        missing = [o for o in range(committed[partition]) if (partition, o) not in seen]
        if missing:
            raise SystemExit(f"partition {partition}: offsets {missing[:10]} were never handled")
    print(f"nothing skipped: every committed offset of every partition was handled; {total} records "
          f"handled, {total - len(seen)} of them twice (at-least-once: records a member handled "
          f"after its last commit, before it was killed)")
    print("the group now (what `shmbus groups describe dashboard` shows):")
    print(f"  {'PARTITION':>9} {'CURRENT-OFFSET':>14} {'LOG-END-OFFSET':>14} {'LAG':>6}")
    for partition in range(PARTITIONS):
        print(f"  {partition:>9} {committed[partition]:>14} {ends[partition]:>14} "
              f"{ends[partition] - committed[partition]:>6}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="how many members to kill (default 5)")
    args = parser.parse_args()

    spawn = multiprocessing.get_context("spawn")
    data_dir = tempfile.mkdtemp(prefix="shmbus-example-")
    workdir = os.path.join(data_dir, "example")
    os.makedirs(workdir)
    bus = shmbus.connect(BUS, data_dir)  # starts the bus's supervisor
    try:
        bus.create_topic(TOPIC, partitions=PARTITIONS, ring_bytes=4 << 20, durable=False)
        stop_producer = os.path.join(workdir, "producer.stop")
        feeder = spawn.Process(target=producer, args=(data_dir, stop_producer))
        feeder.start()
        recoveries, all_logs = [], []
        for run in range(args.runs):
            recovery, logs = one_run(bus, data_dir, workdir, run, spawn)
            recoveries.append(recovery)
            all_logs.extend(logs)
        open(stop_producer, "w").close()
        feeder.join(10)
        check_nothing_skipped(bus, all_logs)
        ms = sorted(r * 1000 for r in recoveries)
        print(f"SIGKILL to partitions read again: median {statistics.median(ms):.0f} ms "
              f"(min {ms[0]:.0f}, max {ms[-1]:.0f}, {len(ms)} runs)")
    finally:
        bus.stop_supervisor()
        bus.close()
        # The supervisor holds the data dir's lock until it has removed everything.
        with open(os.path.join(data_dir, "supervisor.lock")) as lock:
            deadline = time.monotonic() + 20
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.05)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
