"""shmbus produce: one record per line of stdin (or per -D delimiter), or one per FILE,
with kcat's flags (-p -K -H -Z -D) next to shmbus's long ones (--key, --key-separator,
--partition).

A failure stops at the record that failed and says which it was and how many were
sent before it; nothing after it is sent, so rerunning from that line resends nothing
twice."""
import sys

import click

from .._errors import MessageTooLarge, ShmbusError
from ._format import human
from ._kcat import delimiter
from ._plumbing import HELP_OPTIONS, CliError, bus_options, exclusive, open_bus

READ_CHUNK = 1 << 20


def _header(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise CliError(f"-H {text!r}: a header is name=value")
    return name, value.encode()


@click.command(context_settings=HELP_OPTIONS)
@bus_options
@click.argument("topic")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, allow_dash=False))
@click.option("-p", "--partition", type=click.IntRange(min=0), default=None,
              help="Send every record to this partition (default: by key, else sticky).")
@click.option("-k", "--key", default=None, help="The key of every record.")
@click.option("-K", "--key-separator", "key_separator", default=None, metavar="DELIM",
              help="Split each record at the first DELIM into key and value (kcat's -K); a record "
                   "without it has no key.")
@click.option("-H", "--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="Add this header to every record (repeatable).")
@click.option("-Z", "--null", "empty_is_null", is_flag=True,
              help="Send an empty value (or key) as null, not as empty bytes.")
@click.option("-D", "--delimiter", "record_delimiter", default=None, metavar="DELIM",
              help="Records on stdin end with DELIM instead of a newline (escapes: \\n \\t \\r \\0 \\xHH).")
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True, metavar="SECONDS",
              help="How long a record may wait for ring space before the command fails.")
def produce(bus, data_dir, topic, files, partition, key, key_separator, headers, empty_is_null,
            record_delimiter, timeout):
    """Send records to TOPIC: one per line of stdin, or one per FILE (the whole file,
    binary-safe)."""
    exclusive(key=key, K=key_separator)
    if files and record_delimiter is not None:
        raise CliError("-D splits stdin into records; a FILE is always one record: give one or the other")
    header_list = [_header(h) for h in headers]
    sep = delimiter(key_separator, "-K") if key_separator is not None else None
    fixed_key = key.encode() if key is not None else None
    records = _files(files) if files else _stdin(delimiter(record_delimiter, "-D") if record_delimiter else b"\n")
    sent = 0
    where = None
    with open_bus(bus, data_dir) as b, b.producer(timeout=timeout) as p:
        limit = _largest_record(b, topic)
        try:
            for where, value in records:
                record_key = fixed_key
                if sep is not None:
                    record_key, found, rest = value.partition(sep)
                    if found:
                        value = rest
                    else:
                        record_key = None
                if empty_is_null:
                    value = value or None
                    record_key = record_key or None
                p.send(topic, value, key=record_key, headers=header_list, partition=partition)
                sent += 1
            p.flush()
        except MessageTooLarge:
            size = len(value or b"") + len(record_key or b"")
            raise CliError(_failed(sent, where, f"{human(size)} is larger than the largest record topic "
                                                f"{topic!r} takes ({human(limit)}; a ring holds records "
                                                f"up to half its size)")) from None
        except (ShmbusError, OSError, ValueError) as e:
            if sent == 0 and where is None:
                raise
            raise CliError(_failed(sent, where, str(e))) from None
        except KeyboardInterrupt:
            click.echo(f"shmbus: interrupted at {where}: sent {sent} record(s) to {topic!r} before it", err=True)
            raise SystemExit(130) from None
    click.echo(f"sent {sent} record(s) to {topic!r}", err=True)


def _failed(sent, where, why):
    return f"{where}: {why}; sent {sent} record(s) before it, nothing from {where} on"


def _largest_record(b, topic):
    return b.describe_topic(topic).max_record_bytes


def _stdin(delim):
    """(where, record) per delimited record of stdin; a last record without a delimiter
    counts, a delimiter at the very end adds no empty record."""
    source = sys.stdin.buffer
    number = 0
    if delim == b"\n":
        for line in source:
            number += 1
            yield f"line {number}", line[:-1] if line.endswith(b"\n") else line
        return
    pending = b""
    while True:
        chunk = source.read(READ_CHUNK)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(delim)
        for record in complete:
            number += 1
            yield f"record {number}", record
    if pending:
        yield f"record {number + 1}", pending


def _files(paths):
    for path in paths:
        with open(path, "rb") as f:
            yield f"file {path}", f.read()
