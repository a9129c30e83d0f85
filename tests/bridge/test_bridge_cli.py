"""`shmbus bridge` as a command: a record the other side refuses stops its partition with the
reason in the log and in `shmbus stats`/`top` (never skipped), bridge lag in stats, bad
configuration as one-line errors, --help with an example, and the example program."""
import json
import os
import subprocess
import sys

import pytest

from shmbus.bridge._config import group_id

import kafkakit
from buskit import run_cli
from kafkakit import FAST_GROUP, unique

pytestmark = pytest.mark.timeout(90)

FAST = [arg for key, value in FAST_GROUP.items() for arg in ("-X", f"{key}={value}")]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def stats_json(paths):
    done = run_cli(paths, "stats", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bridge_rows(paths, name):
    """The bridge's rows in `shmbus stats --json`, by (direction, partition)."""
    return {(r["direction"], r["partition"]): r for r in stats_json(paths)["bridges"] if r["bridge"] == name}


def test_a_refused_record_stops_its_partition(bus, bus_paths, broker, bridges):
    outbound, inbound = unique("frames"), unique("jobs")
    bus.create_topic(outbound, partitions=2, ring_bytes=8 << 20)
    bus.create_topic(inbound, partitions=1, ring_bytes=256 << 10)   # takes records up to ~128 KiB
    kafkakit.create_topic(broker, inbound, 1)
    with bus.producer() as p:
        for value in (b"a0", b"a1", b"x" * (1_500_000), b"a3"):   # Kafka takes 1 MB by default
            p.send(outbound, value, partition=0)
        for i in range(5):
            p.send(outbound, f"b{i}".encode(), partition=1)
    kafka = kafkakit.producer(broker, **{"message.max.bytes": 10_000_000})
    for value in (b"j0", b"y" * 200_000, b"j2"):
        kafka.produce(inbound, value, partition=0)
    assert kafka.flush(10) == 0
    name = unique("edge")
    bridge = bridges("--kafka", broker.address, "--to-kafka", outbound, "--from-kafka", inbound, "--name", name,
                     *FAST)
    bridge.wait_log("refuses the record at offset 2")
    bridge.wait_log("shmbus refuses the record at offset 1")

    # To Kafka: partition 0 stopped before the large record, partition 1 went on.
    in_kafka = kafkakit.read_topic(broker, outbound, expect=7)
    assert [m.value() for m in in_kafka[0]] == [b"a0", b"a1"]
    assert [m.value() for m in in_kafka[1]] == [f"b{i}".encode() for i in range(5)]
    kafkakit.wait_for(lambda: {p["partition"]: p["committed"] for p in bus.call(
        "describe_group", group=group_id(name))["partitions"]} == {0: 2, 1: 5}, 10, "the commits")
    # From Kafka: the record shmbus cannot hold stopped its partition; the commit stays before it.
    with bus.consumer(inbound, auto_offset_reset="earliest") as c:
        assert [m.value for m in c.poll_many(100, timeout=1.0)] == [b"j0"]
    kafkakit.wait_for(lambda: kafkakit.committed(broker, group_id(name), inbound, 1) == {0: 1}, 10,
                      "the Kafka commit")

    # Both stops are in stats, with the reason; the lag counts what did not cross.
    def reported():
        rows = bridge_rows(bus_paths, name)
        return rows if len([r for r in rows.values() if r.get("error")]) == 2 else None
    by_side = kafkakit.wait_for(reported, 10, "both stopped partitions in stats")
    assert "message.max.bytes" in by_side["to_kafka", 0]["error"] and by_side["to_kafka", 0]["records"] == 2
    assert by_side["to_kafka", 0]["kafka_topic"] == outbound and by_side["to_kafka", 0]["committed"] == 2
    assert by_side["to_kafka", 1]["error"] is None and by_side["to_kafka", 1]["records"] == 0
    assert "ring" in by_side["from_kafka", 0]["error"] and by_side["from_kafka", 0]["records"] == 2
    labels = f'bridge="{name}",direction="to_kafka",partition="0",topic="{outbound}"'
    prometheus = run_cli(bus_paths, "stats", "--prometheus").stdout.decode()
    metric = {line.split("{")[0] + "{" + ",".join(sorted(line.split("{")[1].split("}")[0].split(","))) + "}":
              float(line.rsplit(" ", 1)[1]) for line in prometheus.splitlines()
              if line.startswith("shmbus_bridge_")}
    assert metric[f"shmbus_bridge_partition_stopped{{{labels}}}"] == 1, metric
    assert metric[f"shmbus_bridge_lag_records{{{labels}}}"] == 2, metric
    table = run_cli(bus_paths, "stats").stdout.decode()
    assert f"bridge {name} to_kafka {outbound}/0 -> Kafka {outbound}: 2 record(s)" in table, table
    assert "STOPPED: Kafka refuses the record at offset 2" in table, table
    top = subprocess.Popen([sys.executable, "-m", "shmbus", "top", "--bus", bus_paths.bus, "--data-dir",
                            bus_paths.data_dir, "--interval", "0.2", "-n", "2"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=dict(os.environ, COLUMNS="250"))
    out, _ = top.communicate(timeout=20)
    assert f"bridge {name}".encode() in out and b"STOPPED" in out, out[-2000:]

    assert bridge.terminate() == 0, bridge.log()   # a stopped partition is not a failed bridge
    log = bridge.log()
    assert log.count("refuses the record") == 2, log   # said once each
    assert bridge_rows(bus_paths, name) == {}   # a bridge that stopped is no longer shown


# Through the command (one Python start-up each, run side by side): each source of error.
BAD_COMMANDS = [
    (["--kafka", "127.0.0.1:9092", "--to-kafka", "t", "-X", "no.such.property=1"], "No such configuration property"),
    (["--kafka", "not a host:9092", "--to-kafka", "t"], "bad Kafka address"),
    (["--kafka", "127.0.0.1:9092", "--to-kafka", "a=b=c"], "bad --to-kafka 'a=b=c'"),
    (["--to-kafka", "t"], "no Kafka broker given"),
    (["--config", "{bad_toml}"], "is not valid TOML"),
]
# The same checks, in the process: every rule.
BAD_CONFIGS = [
    (dict(kafka="127.0.0.1:99999", to_kafka=["t"]), "bad Kafka address '127.0.0.1:99999'"),
    (dict(kafka="127.0.0.1:9092,", to_kafka=["t"]), "bad Kafka address ''"),
    (dict(kafka="127.0.0.1:9092", from_kafka=["=x"]), "bad --from-kafka '=x'"),
    (dict(kafka="127.0.0.1:9092", to_kafka=["a="]), "bad --to-kafka 'a='"),
    (dict(kafka="127.0.0.1:9092", to_kafka=["a/b"]), "invalid topic name 'a/b'"),
    (dict(kafka="127.0.0.1:9092", to_kafka=["a=x", "a=y"]), "maps topic 'a' twice"),
    (dict(kafka="127.0.0.1:9092", from_kafka=["k1=s", "k2=s"]), "onto shmbus topic 's'"),
    (dict(kafka="127.0.0.1:9092", to_kafka=["t"], properties=["linger.ms"]), "bad -X 'linger.ms'"),
    (dict(kafka="127.0.0.1:9092"), "nothing to bridge"),
    (dict(kafka="127.0.0.1:9092", to_kafka=["t"], name="../x"), "invalid bridge name '../x'"),
    (dict(config_file="/nonexistent/bridge.toml"), "cannot read /nonexistent/bridge.toml"),
    (dict(config_file="{unknown_key}"), "unknown key(s) topics"),
    (dict(config_file="{bad_map}"), "to_kafka must be a table"),
]
# Refused when the clients are made: librdkafka's checks, and what the guarantees need.
BAD_PROPERTIES = [
    ({"acks": "1"}, "-X acks=1 is refused"),
    ({"enable.idempotence": "false"}, "-X enable.idempotence=false is refused"),
    ({"enable.auto.commit": "true"}, "-X enable.auto.commit=true is refused"),
    ({"group.id": "mine"}, "-X group.id is refused"),
    ({"linger.ms": "soon"}, "Invalid value"),
    ({"no.such.property": "1"}, "No such configuration property"),
]


def test_bad_configuration_is_one_line(bus, bus_paths, tmp_path):
    from shmbus.bridge import Bridge, BridgeConfig, BridgeConfigError
    files = {"bad_toml": tmp_path / "bad.toml", "unknown_key": tmp_path / "unknown.toml",
             "bad_map": tmp_path / "map.toml"}
    files["bad_toml"].write_text("name = \n")
    files["unknown_key"].write_text('topics = ["imu"]\n')
    files["bad_map"].write_text('to_kafka = "imu"\n[kafka]\n"bootstrap.servers" = "h:1"\n')
    env = {k: v for k, v in os.environ.items() if k not in ("SHMBUS_BUS", "SHMBUS_DATA_DIR")}
    runs = []
    for args, expected in BAD_COMMANDS:
        args = [a.format(**files) for a in args]
        runs.append((args, expected, subprocess.Popen(
            [sys.executable, "-m", "shmbus", "bridge", "--bus", bus_paths.bus, "--data-dir", bus_paths.data_dir,
             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)))
    for options, expected in BAD_CONFIGS:
        if "config_file" in options:
            options = dict(options, config_file=options["config_file"].format(**files))
        with pytest.raises(BridgeConfigError) as caught:
            BridgeConfig.build(**options)
        assert expected in str(caught.value) and "\n" not in str(caught.value), (options, caught.value)
    for props, expected in BAD_PROPERTIES:
        with pytest.raises(BridgeConfigError) as caught:
            Bridge(bus, kafka=dict(props, **{"bootstrap.servers": "127.0.0.1:9092"}), to_kafka=["t"],
                   from_kafka=["u"])
        assert expected in str(caught.value) and "\n" not in str(caught.value), (props, caught.value)
    for args, expected, proc in runs:
        out, err = proc.communicate(timeout=60)
        lines = err.decode().strip().splitlines()
        assert proc.returncode != 0, (args, err)
        assert len(lines) == 1 and lines[0].startswith("shmbus: error: ") and expected in lines[0], (args, lines)


def test_a_missing_shmbus_topic_is_one_line(bus, bus_paths, broker):
    done = run_cli(bus_paths, "bridge", "--kafka", broker.address, "--to-kafka", "nonexistent", timeout=30)
    lines = done.stderr.decode().strip().splitlines()
    assert done.returncode == 1
    assert lines[-1].startswith("shmbus: error: --to-kafka nonexistent: no such topic on bus"), lines


def test_help_has_an_example():
    done = run_cli(None, "bridge", "--help")
    assert done.returncode == 0
    text = done.stdout.decode()
    assert "shmbus bridge --kafka 127.0.0.1:9092 --to-kafka imu" in text and "--config" in text and "-X" in text


def test_the_example_runs(bus_paths, broker):
    env = dict(os.environ, SHMBUS_BUS=bus_paths.bus, SHMBUS_DATA_DIR=bus_paths.data_dir)
    done = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "kafka_bridge.py"), "--kafka",
                           broker.address], env=env, capture_output=True, timeout=80)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert b"kafka_bridge: ok" in done.stdout, done.stdout
