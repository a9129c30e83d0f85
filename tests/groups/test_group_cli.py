"""shmbus groups list | describe | reset-offsets | delete."""
import json
import os

import pytest

from shmbus import TopicPartition
from buskit import run_cli
from groupkit import produce

pytestmark = pytest.mark.timeout(90)


def cli(paths, *args):
    result = run_cli(paths, "groups", *args)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def test_groups_cli(bus, bus_paths, make_topic):
    make_topic("t", partitions=2)
    produce(bus, "t", 2, 10)
    c = bus.consumer("t", group="g", auto_offset_reset="earliest")
    got = c.poll_many(13, timeout=1.0)
    c.commit()
    committed = {p: c.committed(TopicPartition("t", p)) for p in (0, 1)}
    assert sum(committed.values()) == len(got) == 13

    code, out, _ = cli(bus_paths, "list")
    assert code == 0
    assert out.split("\n")[1].split()[:3] == ["g", "Stable", "1"]

    code, out, _ = cli(bus_paths, "describe", "g")
    assert code == 0
    lines = out.strip().split("\n")
    assert lines[1].split() == ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                                "CONSUMER-ID", "PID"]
    member = c._member.member_id
    for p in (0, 1):
        assert lines[2 + p].split() == ["t", str(p), str(committed[p]), "10", str(10 - committed[p]),
                                        member, str(os.getpid())]
    code, out, _ = cli(bus_paths, "describe", "g", "--json")
    assert json.loads(out)["partitions"][0]["lag"] == 10 - committed[0]

    # A dry run shows the plan and changes nothing; --execute is refused while members live.
    code, out, err = cli(bus_paths, "reset-offsets", "g", "--to-earliest")
    assert code == 0 and "dry run" in err
    assert [line.split() for line in out.strip().split("\n")[1:]] == \
        [["t", str(p), str(committed[p]), "0"] for p in (0, 1)]
    assert c.committed(TopicPartition("t", 0)) == committed[0]
    code, _, err = cli(bus_paths, "reset-offsets", "g", "--to-earliest", "--execute")
    assert code != 0 and err.startswith("shmbus: error:") and "live member" in err
    code, _, err = cli(bus_paths, "delete", "g")
    assert code != 0 and "live member" in err
    c.close()

    code, _, _ = cli(bus_paths, "reset-offsets", "g", "--to-offset", "4", "--execute")
    assert code == 0
    assert [row[2] for row in bus.call("group_committed", group="g", partitions=[["t", 0], ["t", 1]])] == [4, 4]
    code, _, _ = cli(bus_paths, "reset-offsets", "g", "--to-offset", "99", "--execute")
    assert code == 0  # clamped to the end, as Kafka does
    assert [row[2] for row in bus.call("group_committed", group="g", partitions=[["t", 0], ["t", 1]])] == [10, 10]
    code, _, _ = cli(bus_paths, "reset-offsets", "g", "--to-earliest", "--execute")
    with bus.consumer("t", group="g", auto_offset_reset="latest") as again:
        assert len(again.poll_many(100, timeout=1.0)) >= 1  # read from 0 again, not from "latest"
    code, _, err = cli(bus_paths, "reset-offsets", "g")
    assert code != 0 and "--to-earliest" in err

    code, out, _ = cli(bus_paths, "delete", "g")
    assert code == 0
    code, out, _ = cli(bus_paths, "list", "--json")
    assert json.loads(out) == []
    code, _, err = cli(bus_paths, "describe", "g")
    assert code != 0 and "unknown group" in err
