"""shmbus produce | consume: records from stdin, records to stdout (kcat-style)."""
import base64
import json
import sys

import click

from ._plumbing import bus_options, open_bus


@click.command()
@bus_options
@click.argument("topic")
@click.option("--key", default=None, help="The key of every record.")
@click.option("--key-separator", default=None, help="Split each line at the first SEP into key and value.")
@click.option("--partition", type=int, default=None)
def produce(bus, data_dir, topic, key, key_separator, partition):
    """Send one record per line of stdin."""
    sent = 0
    with open_bus(bus, data_dir) as b, b.producer() as p:
        for line in sys.stdin.buffer:
            value = line.rstrip(b"\n")
            record_key = key.encode() if key is not None else None
            if key_separator is not None:
                sep = key_separator.encode()
                if sep in value:
                    record_key, value = value.split(sep, 1)
            p.send(topic, value, key=record_key, partition=partition)
            sent += 1
        p.flush()
    click.echo(f"sent {sent} record(s) to {topic!r}", err=True)


def _text(data):
    if data is None:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(data).decode()


@click.command()
@bus_options
@click.argument("topic")
@click.option("--group", default=None, help="Consume as a member of this consumer group.")
@click.option("--from-beginning", is_flag=True, help="Start at the earliest retained record.")
@click.option("--max-messages", type=int, default=None, help="Exit after this many records.")
@click.option("--timeout", type=float, default=None, help="Exit after this many seconds without a record.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@click.option("--print-key", is_flag=True, help="Print key<TAB>value.")
def consume(bus, data_dir, topic, group, from_beginning, max_messages, timeout, as_json, print_key):
    """Print records as they arrive."""
    out = sys.stdout.buffer
    received = 0
    reset = "earliest" if from_beginning else "latest"
    with open_bus(bus, data_dir) as b, b.consumer(topic, group=group, auto_offset_reset=reset) as c:
        while max_messages is None or received < max_messages:
            want = 500 if max_messages is None else min(500, max_messages - received)
            batch = c.poll_many(want, timeout=timeout)
            if not batch:
                break
            for m in batch:
                if as_json:
                    line = json.dumps({
                        "topic": m.topic, "partition": m.partition, "offset": m.offset,
                        "timestamp_ns": m.timestamp_ns, "key": _text(m.key), "value": _text(m.value),
                        "headers": [[k, _text(v)] for k, v in m.headers],
                    }).encode()
                elif print_key:
                    line = (m.key or b"") + b"\t" + (m.value or b"")
                else:
                    line = m.value or b""
                out.write(line + b"\n")
            out.flush()
            received += len(batch)
            if group is not None:
                c.commit()
