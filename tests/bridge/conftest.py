"""One Tansu broker per test module (starting one takes milliseconds; what costs is a
Kafka group join, which the tests keep short with kafkakit.FAST_GROUP), and the bridges
a test starts, stopped at its end."""
import pytest

import kafkakit


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = kafkakit.Broker(str(tmp_path_factory.mktemp("tansu") / "broker.log")).start()
    yield b
    b.stop()


@pytest.fixture
def bridges(bus_paths, tmp_path):
    """Start `shmbus bridge` processes on the test's bus: bridges(*args) -> BridgeProcess.
    Teardown kills any still running, before the bus's leak check."""
    started = []

    def start(*args, log_name=None):
        process = kafkakit.BridgeProcess(bus_paths, str(tmp_path / (log_name or f"bridge{len(started)}.log")),
                                         *args).start()
        started.append(process)
        return process
    yield start
    for process in started:
        process.ensure_gone()
