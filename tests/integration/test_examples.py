"""The examples run as a user would run them, on a private bus."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


@pytest.mark.parametrize("script, args, expect", [
    ("quickstart.py", [], b"quickstart/"),
    ("sensor_ingestion.py", ["1"], b"dashboard: read"),
    ("latency.py", ["2000"], b"one-way p50"),
    ("latency.py", ["2000", "busy"], b"one-way p50"),
    ("camera_frames.py", ["300"], b"0 frames not as written"),
    ("asyncio_service.py", ["2000"], b"asyncio service: 2000 orders priced -> 2000 invoices"),
])
def test_example_runs(bus_paths, script, args, expect):
    env = dict(os.environ, SHMBUS_BUS=bus_paths.bus, SHMBUS_DATA_DIR=bus_paths.data_dir)
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *args], env=env,
                          capture_output=True, timeout=90)
    assert done.returncode == 0, done.stderr.decode()
    assert expect in done.stdout
