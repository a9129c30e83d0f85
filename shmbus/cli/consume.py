"""shmbus consume: records to stdout, with kcat's flags (-p -o -e -c -f -K -J -u -Z)
next to shmbus's long ones (--from-beginning, --max-messages, --timeout, --json)."""
import sys
import time

import click

from .._types import TopicPartition
from ._kcat import FORMAT_TOKENS, compile_format, delimiter, kcat_json, parse_offset, shmbus_json
from ._plumbing import HELP_OPTIONS, CliError, bus_options, exclusive, open_bus

BATCH = 500
END_CHECK_WAIT = 0.2   # -e: how long a poll waits before the ends are looked at again


def _format_help():
    tokens = "  ".join(f"%{t} {what}" for t, what in FORMAT_TOKENS.items())
    return f"Print each record as FORMAT (kcat's -f): {tokens}; \\n \\t escapes. No newline is added."


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.argument("topic")
@click.option("-p", "--partition", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Read only this partition (repeatable; default: all).")
@click.option("-o", "--offset", "offset", default=None, metavar="OFFSET",
              help="Where to start: beginning, end (the default), stored (the group's committed "
                   "offset), N (absolute), -N (N records before the end of each partition) or "
                   "s@TIMESTAMP_MS (the first record at or after that time).")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest retained record (-o beginning).")
@click.option("-G", "--group", default=None, help="Consume as a member of this consumer group (commits).")
@click.option("-e", "--exit-at-end", is_flag=True,
              help="Exit (status 0) once every assigned partition's end is reached.")
@click.option("-c", "--max-messages", "max_messages", type=click.IntRange(min=1), default=None,
              help="Exit after this many records.")
@click.option("--timeout", type=click.FloatRange(min=0), default=None, metavar="SECONDS",
              help="Exit after this many seconds without a record.")
@click.option("-f", "--format", "fmt", default=None, metavar="FORMAT", help=_format_help())
@click.option("-K", "--key-delimiter", default=None, metavar="DELIM",
              help="Print key DELIM value (kcat's -K; escapes like \\t allowed).")
@click.option("--print-key", is_flag=True, help="Print key<TAB>value (-K '\\t').")
@click.option("-J", "kcat_envelope", is_flag=True,
              help="One JSON object per record, kcat -J's envelope: topic, partition, offset, tstype, "
                   "ts (ms), headers, key, payload. Non-UTF-8 bytes are {\"base64\": ...}.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per record with shmbus's names (timestamp_ns, value). "
                   "Non-UTF-8 bytes are {\"base64\": ...}.")
@click.option("-Z", "--null", "null_as_text", is_flag=True, help="Print a missing key or value as NULL.")
@click.option("-u", "--unbuffered", is_flag=True, help="Flush stdout after every record.")
def consume(bus, data_dir, topic, partitions, offset, from_beginning, group, exit_at_end, max_messages,
            timeout, fmt, key_delimiter, print_key, kcat_envelope, as_json, null_as_text, unbuffered):
    """Print records of TOPIC as they arrive: one value per line by default."""
    exclusive(o=offset, from_beginning=from_beginning)
    exclusive(f=fmt, J=kcat_envelope, json=as_json, K=key_delimiter, print_key=print_key)
    spec = parse_offset("beginning" if from_beginning else offset or "end")
    if group is not None and partitions:
        raise CliError("-p and --group cannot be used together: a group member reads the partitions its "
                       "group gives it")
    if group is not None and spec.kind not in ("beginning", "end", "stored"):
        raise CliError(f"-o {offset} needs partitions of its own: drop --group, or move the group's "
                       f"offsets with 'shmbus groups reset-offsets'")
    if group is None and spec.kind == "stored":
        raise CliError("-o stored reads a group's committed offsets: give --group")
    render = _renderer(fmt, key_delimiter, print_key, kcat_envelope, as_json, null_as_text)

    out = sys.stdout.buffer
    received = 0
    # With a group, -o says where to start when it has no committed offset yet.
    reset = "earliest" if spec.kind == "beginning" else "latest"
    with open_bus(bus, data_dir) as b:
        if group is not None:
            c = b.consumer(topic, group=group, auto_offset_reset=reset)
        else:
            c = b.consumer(auto_offset_reset="earliest" if spec.kind == "beginning" else "latest")
            c.assign(_partitions(b, topic, partitions))
            _seek(b, c, topic, spec)
        with c:
            ends = _Ends(b, topic) if exit_at_end else None
            last_record = time.monotonic()
            while max_messages is None or received < max_messages:
                want = BATCH if max_messages is None else min(BATCH, max_messages - received)
                wait = timeout
                if ends is not None:
                    wait = END_CHECK_WAIT if timeout is None else min(timeout, END_CHECK_WAIT)
                batch = c.poll_many(want, timeout=wait)
                if batch:
                    last_record = time.monotonic()
                    for m in batch:
                        out.write(render(m))
                        if unbuffered:
                            out.flush()
                    out.flush()
                    received += len(batch)
                    if group is not None:
                        c.commit()
                elif timeout is not None and time.monotonic() - last_record >= timeout:
                    break
                if ends is not None and len(batch) < want and ends.reached(c):
                    break


def _renderer(fmt, key_delimiter, print_key, kcat_envelope, as_json, null_as_text):
    null = b"NULL" if null_as_text else b""
    if kcat_envelope:
        return lambda m: kcat_json(m) + b"\n"
    if as_json:
        return lambda m: shmbus_json(m) + b"\n"
    if fmt is not None:
        return compile_format(fmt, null)
    if print_key or key_delimiter is not None:
        sep = b"\t" if print_key else delimiter(key_delimiter, "-K")
        return lambda m: (null if m.key is None else m.key) + sep + (null if m.value is None else m.value) + b"\n"
    return lambda m: (null if m.value is None else m.value) + b"\n"


def _partitions(b, topic, chosen):
    count = b.topic(topic).partitions
    for p in chosen:
        if p >= count:
            raise CliError(f"-p {p}: topic {topic!r} has {count} partition(s), 0..{count - 1}")
    return [TopicPartition(topic, p) for p in (chosen or range(count))]


def _end_offsets(b, topic):
    """{partition: (earliest, end)} from the ring headers, through the supervisor."""
    return {p.partition: (p.earliest_offset, p.end_offset) for p in b.describe_topic(topic).partitions}


def _seek(b, c, topic, spec):
    """-o N, -N and s@MS on every assigned partition (beginning and end are the reset)."""
    if spec.kind == "end":
        for tp in c.assignment():   # the end as of now, not as of the first poll
            c.position(tp)
    if spec.kind in ("beginning", "end"):
        return
    tps = sorted(c.assignment())
    if spec.kind == "time":
        found = c.offsets_for_times({tp: spec.value * 1_000_000 for tp in tps})
        ends = _end_offsets(b, topic)
        for tp in tps:
            c.seek(tp, found[tp] if found[tp] is not None else ends[tp.partition][1])
        return
    ends = _end_offsets(b, topic)
    for tp in tps:
        earliest, end = ends[tp.partition]
        target = spec.value if spec.kind == "offset" else end - spec.value
        # Past the end: start at the end (the next record); before the earliest retained
        # one: start at the earliest.
        c.seek(tp, min(max(target, earliest), end))


class _Ends:
    """-e: has the consumer reached the end of every partition it is assigned?"""

    def __init__(self, b, topic):
        self.bus = b
        self.topic = topic

    def reached(self, c):
        assigned = c.assignment()
        if not assigned:
            return False   # a group member still joining
        ends = _end_offsets(self.bus, self.topic)
        return all(c.position(tp) >= ends[tp.partition][1] for tp in assigned if tp.topic == self.topic)
