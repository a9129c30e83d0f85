"""shmbus record | replay: topics to an MCAP file and back (eCAL Recorder/Player,
`ros2 bag record/play`, `lcm-logger`). The format is in shmbus/_recording.py."""
import signal
import time

import click

from .._errors import ShmbusError
from .._recording import COMPRESSIONS, RecordWriter, open_file
from .._types import TopicPartition
from ._format import human
from ._plumbing import HELP_OPTIONS, CliError, bus_options, exclusive, open_bus

POLL_RECORDS = 4096
POLL_WAIT = 0.1   # seconds a poll waits, so --duration and Ctrl-C are noticed promptly


class _StopRequest:
    """Ctrl-C, SIGTERM or SIGHUP: asked to stop. A flag the loops look at between
    records, never an exception raised in the middle of one (a KeyboardInterrupt between
    a message's index entry and its bytes would leave a chunk whose index lies)."""

    def __init__(self):
        self.asked = False
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._ask)

    def _ask(self, signum, frame):
        self.asked = True

    def sleep(self, seconds):
        """Sleep, waking early when asked to stop."""
        deadline = time.monotonic() + seconds
        while not self.asked and time.monotonic() < deadline:
            time.sleep(min(POLL_WAIT, max(0.0, deadline - time.monotonic())))


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.argument("topics", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True),
              metavar="FILE.mcap", help="The MCAP file to write (replaced if it exists).")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest retained record of each topic.")
@click.option("--since", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Start at the records of the last SECONDS (by record timestamp).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Stop after this long (default: until Ctrl-C or SIGTERM).")
@click.option("--compression", type=click.Choice(COMPRESSIONS), default="zstd", show_default=True,
              help="How MCAP chunks are compressed.")
@click.option("--flush-interval", type=click.FloatRange(min=0.01), default=1.0, show_default=True,
              metavar="SECONDS",
              help="Write the chunk in progress at least this often: at most this much is lost if the "
                   "recorder is killed outright.")
def record(bus, data_dir, topics, output, from_beginning, since, duration, compression, flush_interval):
    """Record TOPICS to an MCAP file (one channel per topic, log time = the record's
    timestamp, key, partition, offset and headers kept) until Ctrl-C, SIGTERM or
    --duration; the file is then finished, readable by any MCAP reader."""
    exclusive(from_beginning=from_beginning, since=since)
    stop = _StopRequest()
    started = time.monotonic()
    with open_bus(bus, data_dir) as b:
        infos = {topic: b.topic(topic) for topic in dict.fromkeys(topics)}
        reset = "earliest" if from_beginning or since is not None else "latest"
        with b.consumer(auto_offset_reset=reset) as c:
            tps = [TopicPartition(t, p) for t, info in infos.items() for p in range(info.partitions)]
            c.assign(tps)
            if since is not None:
                cutoff = time.time_ns() - int(since * 1e9)
                for tp, offset in c.offsets_for_times({tp: cutoff for tp in tps}).items():
                    if offset is None:
                        c.seek_to_end(tp)
                    else:
                        c.seek(tp, offset)
            else:
                for tp in tps:   # "latest" fixed now, before "recording" is said, not at the first poll
                    c.position(tp)
            with open(output, "wb") as f, RecordWriter(f, compression, flush_interval) as writer:
                writer.describe_source(b.name, b.data_dir, list(infos))
                for topic, info in infos.items():
                    writer.add_topic(topic, info.partitions, info.durable)
                click.echo(f"recording {', '.join(infos)} to {output} (Ctrl-C stops)", err=True)
                deadline = None if duration is None else time.monotonic() + duration
                while not stop.asked and (deadline is None or time.monotonic() < deadline):
                    wait = POLL_WAIT if deadline is None else max(0.0, min(POLL_WAIT, deadline - time.monotonic()))
                    batch = c.poll_many(POLL_RECORDS, timeout=wait)
                    if batch:
                        writer.write(batch)
                    else:
                        writer.flush_if_due()
                missed = c.missed()
    seconds = time.monotonic() - started
    note = f"; {missed:,} overwritten in memory-only rings before they were read" if missed else ""
    click.echo(f"recorded {writer.count:,} record(s), {human(writer.payload_bytes)}, in {seconds:.1f} s "
               f"to {output}{note}", err=True)


def _topic_map(pairs):
    mapping = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            raise CliError(f"--topic {pair!r}: give OLD=NEW")
        mapping[old] = new
    return mapping


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.argument("file", type=click.Path(exists=True, dir_okay=False), metavar="FILE.mcap")
@click.option("--topic", "renames", multiple=True, metavar="OLD=NEW",
              help="Publish the records of topic OLD to NEW (repeatable).")
@click.option("--only", "only", multiple=True, metavar="TOPIC",
              help="Replay only this recorded topic (repeatable; default: all).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=None, metavar="X",
              help="Play X times as fast as recorded (0.5: half speed).")
@click.option("--fast", is_flag=True, help="As fast as possible, no pacing.")
@click.option("--loop", is_flag=True, help="Start again at the end, until Ctrl-C.")
@click.option("--keep-timestamps", is_flag=True,
              help="Give the records their recorded timestamps (default: the time they are replayed).")
@click.option("--create/--no-create", default=True, show_default=True,
              help="Create a missing topic with the partition count it had when recorded.")
def replay(bus, data_dir, file, renames, only, speed, fast, loop, keep_timestamps, create):
    """Publish a file `shmbus record` wrote, with its original pacing (or --speed X, or
    --fast). Keys, headers and partitions are kept (partitions when the topic has as
    many). A file whose recorder was killed is replayed up to where it breaks off."""
    exclusive(speed=speed, fast=fast)
    mapping = _topic_map(renames)
    stop = _StopRequest()
    speed = None if fast else (speed or 1.0)
    sent = 0
    started = time.monotonic()
    with open(file, "rb") as f:
        try:
            contents, _ = open_file(f)
        except ShmbusError:
            raise
        except Exception as e:   # the mcap library's errors have no common parent
            raise CliError(f"{file} is not an MCAP file shmbus can read: {e}") from None
        chosen = [t for t in contents.topics if not only or t in only]
        if only and set(only) - set(contents.topics):
            raise CliError(f"--only: {', '.join(sorted(set(only) - set(contents.topics)))} not in {file} "
                           f"(it has {', '.join(contents.topics) or 'no topics'})")
        if not contents.finished:
            click.echo(f"shmbus replay: {file} was not finished (its recorder was killed?): replaying the "
                       f"records up to where it breaks off", err=True)
        with open_bus(bus, data_dir) as b, b.producer() as p:
            partitions = _targets(b, contents.topics, chosen, mapping, create)
            while not stop.asked:
                f.seek(0)
                _, records = open_file(f)
                sent += _play(p, records, set(chosen), mapping, partitions, speed, keep_timestamps, stop)
                if not loop:
                    break
            p.flush()
    seconds = time.monotonic() - started
    targets = ", ".join(f"{t}->{mapping[t]}" if t in mapping else t for t in chosen)
    click.echo(f"replayed {sent:,} record(s) to {targets} in {seconds:.1f} s", err=True)


def _targets(b, recorded, chosen, mapping, create):
    """{recorded topic: partition count of the topic it goes to}, creating missing ones."""
    existing = b.topics()
    counts = {}
    for topic in chosen:
        target = mapping.get(topic, topic)
        if target not in existing:
            if not create:
                raise CliError(f"topic {target!r} does not exist (replay creates it unless --no-create)")
            existing[target] = b.create_topic(target, partitions=recorded[topic])
            click.echo(f"shmbus replay: created topic {target!r} with {recorded[topic]} partition(s)", err=True)
        counts[topic] = existing[target].partitions
    return counts


def _play(p, records, chosen, mapping, partitions, speed, keep_timestamps, stop):
    """Publish one pass over the file; returns the records sent."""
    sent = 0
    first_ns = start = None
    send = p.send
    for r in records:
        if stop.asked:
            break
        if r.topic not in chosen:
            continue
        if speed is not None:
            if first_ns is None:
                first_ns, start = r.timestamp_ns, time.monotonic()
            wait = start + (r.timestamp_ns - first_ns) / 1e9 / speed - time.monotonic()
            if wait > 0:
                stop.sleep(wait)
                if stop.asked:
                    break
        # The recorded partition when the topic has it; else the key's, as any send.
        partition = r.partition if r.partition < partitions[r.topic] else None
        send(mapping.get(r.topic, r.topic), r.value, key=r.key, headers=list(r.headers), partition=partition,
             timestamp_ns=r.timestamp_ns if keep_timestamps else None)
        sent += 1
    return sent
