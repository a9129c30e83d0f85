"""shmbus serve --metrics-port: Prometheus /metrics from the ring headers at each
scrape, parsed with prometheus_client's own parser."""
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import shmbus

import buskit

pytestmark = pytest.mark.timeout(120)


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def part(topic, p):
    return (("partition", str(p)), ("topic", topic))


def grp(group, topic, p):
    return (("group", group), ("partition", str(p)), ("topic", topic))


@pytest.fixture
def served(bus_paths, tmp_path):
    """`shmbus serve --metrics-port 0` in the foreground; yields (port, log path)."""
    log_path = tmp_path / "serve.log"
    log = open(log_path, "wb")
    server = subprocess.Popen([sys.executable, "-m", "shmbus", "serve", "--bus", bus_paths.bus,
                               "--data-dir", bus_paths.data_dir, "--metrics-port", "0"], stdout=log, stderr=log)
    log.close()
    try:
        found = buskit.wait_until(lambda: re.search(r"metrics on http://(\S+):(\d+)/metrics", log_path.read_text()), 20)
        assert found, log_path.read_text()
        assert found.group(1) == "127.0.0.1", "loopback unless --metrics-host says otherwise"
        yield int(found.group(2)), log_path
        server.terminate()
        assert server.wait(20) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_metrics_endpoint_serves_partitions_groups_bridges_and_the_supervisor(served, bus_paths):
    port, _ = served
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False) as bus:
        bus.create_topic("imu", partitions=2, ring_bytes=64 << 10)
        with bus.producer() as p:
            for i in range(100):
                p.send("imu", b"x" * 10, partition=i % 2)
            p.flush()
        with bus.consumer("imu", group="dash", auto_offset_reset="earliest") as c:
            got = 0
            while got < 60:
                got += len(c.poll_many(60 - got, timeout=5))
            c.commit()
            first = scrape(port)
            assert first[("shmbus_group_members", (("group", "dash"),))] == 1
            with bus.producer() as p:
                for i in range(20):
                    p.send("imu", b"y", partition=0)
            time.sleep(0.3)
            second = scrape(port)
        bus.call("bridge_report", name="edge1",
                 lag=[{"direction": "to_kafka", "topic": "imu", "partition": 0, "records": 7}])
        third = scrape(port)

    assert first[("shmbus_partition_end_offset", part("imu", 0))] == 50
    assert second[("shmbus_partition_end_offset", part("imu", 0))] == 70
    assert second[("shmbus_partition_rate_records_per_second", part("imu", 0))] > 0, "rate between scrapes"
    assert second[("shmbus_partition_rate_records_per_second", part("imu", 1))] == 0
    assert ("shmbus_partition_rate_records_per_second", part("imu", 0)) not in first or \
        first[("shmbus_partition_rate_records_per_second", part("imu", 0))] >= 0
    assert 0 < second[("shmbus_ring_fill_ratio", part("imu", 0))] < 1
    assert second[("shmbus_ring_size_bytes", part("imu", 0))] >= 64 << 10
    assert ("shmbus_archive_lag_records", part("imu", 0)) in second
    assert ("shmbus_unsynced_bytes", part("imu", 1)) in second
    assert ("shmbus_partition_producers", part("imu", 0)) in second
    # The consumer read 60 of 100 (range assignment: both partitions, in turn) and committed them.
    committed = sum(first[("shmbus_group_committed_offset", grp("dash", "imu", p))] for p in (0, 1))
    lag = sum(first[("shmbus_group_lag_records", grp("dash", "imu", p))] for p in (0, 1))
    assert committed == 60 and lag == 40
    assert second[("shmbus_group_lag_records", grp("dash", "imu", 0))] == \
        first[("shmbus_group_lag_records", grp("dash", "imu", 0))] + 20
    assert third[("shmbus_bridge_lag_records", (("bridge", "edge1"), ("direction", "to_kafka"),
                                                ("partition", "0"), ("topic", "imu")))] == 7
    assert third[("shmbus_group_members", (("group", "dash"),))] == 0
    assert third[("shmbus_supervisor_up", ())] == 1
    assert third[("shmbus_supervisor_uptime_seconds", ())] > 0
    assert third[("shmbus_supervisor_errors_total", ())] == 0
    assert any(name == "shmbus_bus_info" and dict(labels)["bus"] == bus_paths.bus for name, labels in third)


def test_metrics_port_in_use_is_one_line(served, bus_paths, tmp_path):
    port, _ = served
    other = buskit.new_paths(buskit.unique_bus_name(), tmp_path / "other")
    try:
        done = buskit.run_cli(other, "serve", "--metrics-port", str(port), timeout=60)
        stderr = done.stderr.decode().strip().splitlines()
        assert done.returncode != 0 and stderr[-1].startswith("shmbus: error: --metrics-port"), stderr
        assert "Traceback" not in done.stderr.decode()
    finally:
        assert not buskit.leftovers_after_stop(other)


def test_the_grafana_dashboard_uses_only_names_the_bus_exports():
    """examples/grafana-dashboard.json is built on the names /metrics serves."""
    import json
    import os
    from shmbus._metrics import families
    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "grafana-dashboard.json")
    with open(path) as f:
        dashboard = json.load(f)
    used = set(re.findall(r"shmbus_[a-z_]+", json.dumps(dashboard["panels"])))
    snapshot = {"taken_ns": 2, "topics": {}, "groups": {}, "bridges": [],
                "supervisor": {"pid": 1, "bus": "b", "data_dir": "/d", "started_ns": 1, "errors": 0}}
    exported = set()
    for family in families(snapshot):
        exported.add(family.name)
        exported.add(family.name + "_total" if family.type == "counter" else family.name)
    assert used and used <= exported, used - exported
    assert {"shmbus_group_lag_records", "shmbus_ring_fill_ratio", "shmbus_archive_lag_records",
            "shmbus_bridge_lag_records", "shmbus_partition_end_offset"} <= used
