"""shmbus stats: the table, --json and --prometheus agree with the ring headers."""
import json

from prometheus_client.parser import text_string_to_metric_families

import buskit


def test_stats_json_and_prometheus(bus, bus_paths):
    bus.create_topic("st", partitions=2, ring_bytes=64 << 10)
    with bus.producer() as p:
        for i in range(300):
            p.send("st", b"%d" % i, partition=i % 2)
        p.flush()
    with bus.consumer("st", group="g", auto_offset_reset="earliest") as c:
        got = 0
        while got < 300:
            got += len(c.poll_many(300, timeout=5))
        c.commit()
    done = buskit.run_cli(bus_paths, "stats", "--json", "--interval", "0.2")
    assert done.returncode == 0, done.stderr
    parts = json.loads(done.stdout)["topics"]["st"]["partitions"]
    assert [p["end_offset"] for p in parts] == [150, 150]
    assert all(p["rate"] == 0 for p in parts)
    done = buskit.run_cli(bus_paths, "stats", "--prometheus")
    assert done.returncode == 0, done.stderr
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(done.stdout.decode()) for s in family.samples}
    assert samples[("shmbus_partition_end_offset", (("partition", "1"), ("topic", "st")))] == 150
    assert ("shmbus_archive_lag_records", (("partition", "0"), ("topic", "st"))) in samples
    assert samples[("shmbus_group_lag_records", (("group", "g"), ("partition", "0"), ("topic", "st")))] == 0
    done = buskit.run_cli(bus_paths, "stats")
    assert done.returncode == 0 and b"END-OFFSET" in done.stdout
