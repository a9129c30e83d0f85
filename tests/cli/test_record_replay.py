"""shmbus record / replay: topics to MCAP and back, read with the mcap library itself.

A live recording stopped with Ctrl-C is a finished file; one SIGKILLed keeps what it
flushed, which MCAP's own stream reader recovers; record -> replay -> record gives the
same records; replay keeps the recorded pacing unless told otherwise."""
import os
import signal
import subprocess
import sys
import time

import pytest
from mcap.reader import make_reader
from mcap.stream_reader import StreamReader
from mcap.records import Message as McapMessage
import msgpack

import shmbus
from shmbus._recording import open_file
from shmbus.cli._plumbing import run
from shmbus.cli.main import cli

import buskit

pytestmark = pytest.mark.timeout(120)


def start_record(paths, *args):
    return subprocess.Popen([sys.executable, "-m", "shmbus", "record", *args, "--bus", paths.bus,
                             "--data-dir", paths.data_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_recording(proc):
    """The recorder says "recording ..." once its consumer is in place."""
    line = proc.stderr.readline()
    assert line.startswith(b"recording "), line + proc.stderr.read()


def mcap_records(path):
    """(topic, log_time, sequence, body) of every message, through the mcap library's seeking reader."""
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        channels = {c.topic: c for c in summary.channels.values()}
        rows = [(ch.topic, m.log_time, m.publish_time, m.sequence, msgpack.unpackb(m.data))
                for _, ch, m in reader.iter_messages(log_time_order=False)]
    return channels, rows


def comparable(rows):
    """What must survive a round trip: per topic and partition, offsets, keys, values, headers."""
    return sorted((t, b["partition"], b["offset"], b["key"], b["value"], [tuple(h) for h in b["headers"]])
                  for t, _, _, _, b in rows)


def produce_sample(bus, a, b_topic):
    sent = []
    with bus.producer() as p:
        for i in range(30):
            md = p.send(a, b"\x00value-%d\xff" % i, key=b"k%d" % (i % 3), headers=[("seq", b"%d" % i), ("bin", b"\x80")])
            sent.append((a, md))
        for i in range(5):
            md = p.send(b_topic, None if i == 2 else b"b%d" % i, partition=i % 2)
            sent.append((b_topic, md))
    return sent


def test_record_live_stop_with_ctrl_c_and_read_it_with_mcap(bus, bus_paths, tmp_path):
    bus.create_topic("imu", partitions=3, ring_bytes=64 << 10, durable=False)
    bus.create_topic("gps", partitions=2, ring_bytes=64 << 10)
    out = tmp_path / "live.mcap"
    proc = start_record(bus_paths, "imu", "gps", "-o", str(out))
    wait_recording(proc)
    sent = produce_sample(bus, "imu", "gps")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0, proc.stderr.read()
    assert b"recorded 35 record(s)" in proc.stderr.read()

    channels, rows = mcap_records(out)
    assert set(channels) == {"imu", "gps"}, "one channel per topic"
    assert channels["imu"].message_encoding == "msgpack" and channels["imu"].metadata["shmbus.partitions"] == "3"
    assert len(rows) == 35
    by_offset = {(t, b["partition"], b["offset"]): (log_time, publish, seq, b) for t, log_time, publish, seq, b in rows}
    for topic, md in sent:
        log_time, publish, seq, body = by_offset[(topic, md.partition, md.offset)]
        assert log_time == publish == md.timestamp_ns, "log time = the record's timestamp"
        assert seq == md.offset
    imu = [b for t, _, _, _, b in rows if t == "imu"]
    assert {(b["key"], b["value"][:6]) for b in imu} >= {(b"k0", b"\x00value"), (b"k1", b"\x00value")}
    assert all(b["headers"][1] == ["bin", b"\x80"] for b in imu)
    assert [b["value"] for t, _, _, _, b in sorted(rows, key=lambda r: r[1]) if t == "gps"] == \
        [b"b0", b"b1", None, b"b3", b"b4"]


def test_record_replay_record_round_trip_and_pacing(bus, bus_paths, tmp_path):
    bus.create_topic("imu", partitions=3, ring_bytes=64 << 10, durable=False)
    bus.create_topic("gps", partitions=2, ring_bytes=64 << 10, durable=False)
    produce_sample(bus, "imu", "gps")
    first = tmp_path / "first.mcap"
    done = buskit.run_cli(bus_paths, "record", "imu", "gps", "-o", str(first), "--from-beginning", "--duration", "0.5")
    assert done.returncode == 0, done.stderr

    # Replay into new topics (made with the recorded partition counts), then record those.
    done = buskit.run_cli(bus_paths, "replay", str(first), "--topic", "imu=imu2", "--topic", "gps=gps2", "--fast")
    assert done.returncode == 0, done.stderr
    assert b"replayed 35 record(s)" in done.stderr
    assert bus.topic("imu2").partitions == 3 and bus.topic("gps2").partitions == 2
    second = tmp_path / "second.mcap"
    done = buskit.run_cli(bus_paths, "record", "imu2", "gps2", "-o", str(second), "--from-beginning", "--duration", "0.5")
    assert done.returncode == 0, done.stderr
    _, rows1 = mcap_records(first)
    _, rows2 = mcap_records(second)
    renamed = [({"imu": "imu2", "gps": "gps2"}[t], lt, pt, s, b) for t, lt, pt, s, b in rows1]
    assert comparable(rows2) == comparable(renamed), "same partitions, offsets, keys, values, headers"

    # Pacing: records 0.4 s apart replay 0.4 s apart by default, 4x faster with --speed 4.
    bus.create_topic("paced", ring_bytes=64 << 10, durable=False)
    now = time.time_ns()
    with bus.producer() as p:
        for i in range(3):
            p.send("paced", b"%d" % i, partition=0, timestamp_ns=now + i * 400_000_000)
    paced = tmp_path / "paced.mcap"
    assert buskit.run_cli(bus_paths, "record", "paced", "-o", str(paced), "--from-beginning",
                          "--duration", "0.3").returncode == 0
    timings = {}
    for args in ((), ("--speed", "4")):
        with bus.consumer("paced", auto_offset_reset="latest") as c:
            c.position(shmbus.TopicPartition("paced", 0))
            done = buskit.run_cli(bus_paths, "replay", str(paced), *args)
            assert done.returncode == 0, done.stderr
            got = buskit.read_exact(c, 3)
        stamps = [m.timestamp_ns for m in got]
        timings[args] = (stamps[-1] - stamps[0]) / 1e9
        assert [m.value for m in got] == [b"0", b"1", b"2"]
    assert 0.7 <= timings[()] <= 1.6, timings
    assert 0.15 <= timings[("--speed", "4")] <= 0.6, timings
    # --keep-timestamps gives the recorded timestamps back.
    with bus.consumer("paced", auto_offset_reset="latest") as c:
        c.position(shmbus.TopicPartition("paced", 0))
        assert buskit.run_cli(bus_paths, "replay", str(paced), "--fast", "--keep-timestamps").returncode == 0
        assert [m.timestamp_ns for m in buskit.read_exact(c, 3)] == [now + i * 400_000_000 for i in range(3)]


def test_a_killed_recorder_leaves_what_it_flushed_recoverable(bus, bus_paths, tmp_path):
    bus.create_topic("imu", partitions=1, ring_bytes=1 << 20, durable=False)
    out = tmp_path / "killed.mcap"
    proc = start_record(bus_paths, "imu", "-o", str(out), "--flush-interval", "0.1")
    wait_recording(proc)
    with bus.producer() as p:
        for i in range(500):
            p.send("imu", b"r%d" % i, partition=0)
    # Flushed every 0.1 s: once the file holds all 500, kill it before it can finish.
    def recovered():
        with open(out, "rb") as f:
            return [m for m in _stream_messages(f)]
    assert buskit.wait_until(lambda: len(recovered()) == 500, 20), len(recovered())
    proc.kill()
    proc.wait(10)

    with open(out, "rb") as f:   # not finished: no summary, no footer
        try:
            summary = make_reader(f).get_summary()
        except Exception:   # the mcap library's errors share no parent
            summary = None
        assert summary is None
    values = [msgpack.unpackb(m.data)["value"] for m in recovered()]
    assert values == [b"r%d" % i for i in range(500)], "MCAP's stream reader recovers every flushed chunk"
    with open(out, "rb") as f:
        contents, records = open_file(f)
        assert not contents.finished and contents.topics == {"imu": 1}
        assert len(list(records)) == 500
    # shmbus replay plays such a file up to where it breaks off, and says so.
    bus.create_topic("again", ring_bytes=1 << 20, durable=False)
    done = buskit.run_cli(bus_paths, "replay", str(out), "--topic", "imu=again", "--fast")
    assert done.returncode == 0, done.stderr
    assert b"was not finished" in done.stderr and b"replayed 500 record(s)" in done.stderr
    # --loop goes round until stopped.
    proc = subprocess.Popen([sys.executable, "-m", "shmbus", "replay", str(out), "--topic", "imu=again",
                             "--fast", "--loop", "--bus", bus_paths.bus, "--data-dir", bus_paths.data_dir],
                            stderr=subprocess.PIPE)
    assert buskit.wait_until(lambda: bus.describe_topic("again").partitions[0].end_offset >= 2000, 30)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == 0
    assert b"replayed" in proc.stderr.read()


def _stream_messages(f):
    """Messages of a possibly torn file through mcap's StreamReader, stopping at the tear."""
    records = StreamReader(f).records
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception:
            return
        if isinstance(record, McapMessage):
            yield record


def test_record_refuses_what_it_cannot_do(bus, bus_paths, tmp_path, capsys):
    """In this process: the same run() as the program, without a start per case."""
    bus.create_topic("imu", ring_bytes=64 << 10, durable=False)
    for args, words in [
        (["record", "imu", "-o", str(tmp_path / "x.mcap"), "--from-beginning", "--since", "5"],
         "--from-beginning and --since"),
        (["record", "nope", "-o", str(tmp_path / "x.mcap"), "--duration", "1"], "nope"),
        (["replay", __file__], "not an MCAP file"),
        (["replay", str(tmp_path / "missing.mcap")], "does not exist"),
        (["replay", __file__, "--speed", "2", "--fast"], "--speed and --fast"),
        (["replay", __file__, "--topic", "a"], "OLD=NEW"),
    ]:
        with pytest.raises(SystemExit) as exited:
            run(cli, [*args, "--bus", bus_paths.bus, "--data-dir", bus_paths.data_dir])
        stderr = capsys.readouterr().err
        assert exited.value.code != 0 and stderr.count("\n") == 1 and words in stderr, (args, stderr)
    assert not os.path.exists(tmp_path / "x.mcap") or os.path.getsize(tmp_path / "x.mcap") == 0


def test_the_writer_packs_messages_as_mcap_does_and_its_crcs_check(tmp_path):
    """The recorder packs MCAP messages itself (for speed): byte for byte what the mcap
    package's Message.write makes, in a file whose chunk and summary CRCs mcap checks."""
    from mcap.data_stream import RecordBuilder
    from shmbus._recording import _MESSAGE_FIXED, _MESSAGE_HEAD, _MESSAGE_OPCODE, RecordWriter
    data = b"\x85payload"
    builder = RecordBuilder()
    McapMessage(channel_id=3, log_time=1 << 60, data=data, publish_time=1 << 60, sequence=77).write(builder)
    assert builder.end() == _MESSAGE_HEAD.pack(_MESSAGE_OPCODE, _MESSAGE_FIXED + len(data), 3, 77, 1 << 60, 1 << 60) + data

    messages = [shmbus.Message("t", i % 2, i, 1_700_000_000_000_000_000 + i * 1000, b"k%d" % i, b"v" * (i % 50),
                               (("h", b"%d" % i),)) for i in range(5000)]
    for compression in ("zstd", "lz4", "none"):
        path = tmp_path / f"{compression}.mcap"
        with open(path, "wb") as f, RecordWriter(f, compression, chunk_size=16 << 10) as writer:
            writer.describe_source("b", "/d", ["t"])
            writer.add_topic("t", 2, False)
            writer.write(messages[:2500])
            writer.write(messages[2500:])
        with open(path, "rb") as f:
            reader = make_reader(f, validate_crcs=True)
            summary = reader.get_summary()
            assert summary.statistics.message_count == 5000 and len(summary.chunk_indexes) > 5
            assert [m.log_time for _, _, m in reader.iter_messages()] == [m.timestamp_ns for m in messages]
            assert list(reader.iter_metadata())[0].metadata["bus"] == "b"
        with open(path, "rb") as f:
            assert sum(isinstance(r, McapMessage) for r in StreamReader(f, validate_crcs=True).records) == 5000
        with open(path, "rb") as f:
            _, records = open_file(f)
            assert [tuple(r) for r in records] == [tuple(m) for m in messages]
