"""shmbus bridge: mirror topics to and from Apache Kafka (shmbus.bridge.Bridge), in the
foreground until SIGTERM or Ctrl-C, which deliver and commit what is in flight first."""
import logging
import signal
import sys

import click

from ._plumbing import CliError, bus_options, open_bus

EPILOG = """\b
Examples:
  shmbus bridge --kafka 127.0.0.1:9092 --to-kafka imu --from-kafka commands --name edge1
  shmbus bridge --kafka kafka1:9092 --to-kafka imu=edge1.imu -X compression.type=lz4 \\
                -X linger.ms=20 --name edge1
  shmbus bridge --config /etc/shmbus/bridge.toml

\b
A record goes to the same partition number when both topics have as many partitions
(else by key: murmur2, Kafka's Java partitioner). shmbus offsets are committed once
Kafka acknowledged the records (idempotent producer, acks=all), Kafka offsets once the
records are fsynced in shmbus: at least once, never skipped. Records that came through
the bridge carry the header shmbus.bridge=<name> and are not carried back.
Lag per partition: shmbus stats, shmbus top.
"""


@click.command(epilog=EPILOG)
@bus_options
@click.option("--kafka", metavar="HOST:PORT", default=None,
              help="Kafka's bootstrap servers (comma-separated); also bootstrap.servers in --config.")
@click.option("--to-kafka", "to_kafka", multiple=True, metavar="TOPIC[=KAFKA_TOPIC]",
              help="Mirror a shmbus topic to Kafka (repeatable).")
@click.option("--from-kafka", "from_kafka", multiple=True, metavar="KAFKA_TOPIC[=TOPIC]",
              help="Mirror a Kafka topic to shmbus (repeatable).")
@click.option("--name", default=None,
              help="The bridge's name: its groups are shmbus-bridge-NAME on both sides (default 'bridge').")
@click.option("--config", "config_file", metavar="FILE.toml", default=None,
              help="name, [kafka] properties, [to_kafka] and [from_kafka] maps (the command line adds to it).")
@click.option("-X", "properties", multiple=True, metavar="PROPERTY=VALUE",
              help="A librdkafka property for the Kafka clients (security, compression, linger...).")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=10.0, show_default=True,
              metavar="SECONDS", help="How long a stop waits for Kafka to acknowledge what is in flight.")
def bridge(bus, data_dir, kafka, to_kafka, from_kafka, name, config_file, properties, shutdown_timeout):
    """Mirror topics to and from Apache Kafka, at least once, partitions kept."""
    try:
        from confluent_kafka import KafkaException

        from ..bridge import Bridge, BridgeConfig
    except ImportError as e:
        raise CliError(f"the Kafka bridge needs confluent-kafka ({e}): pip install 'shmbus[kafka]'") from None
    config = BridgeConfig.build(kafka=kafka, to_kafka=to_kafka, from_kafka=from_kafka, name=name,
                                properties=properties, config_file=config_file)
    _log_to_stderr()
    with open_bus(bus, data_dir) as b:
        runner = Bridge.from_config(b, config, shutdown_timeout=shutdown_timeout)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: runner.stop())
        try:
            runner.run()
        except KafkaException as e:
            raise CliError(f"Kafka: {e.args[0].str() if e.args and hasattr(e.args[0], 'str') else e}") from None


def _log_to_stderr():
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s shmbus-bridge[%(process)d]: %(message)s",
                                           datefmt="%Y-%m-%d %H:%M:%S"))
    log = logging.getLogger("shmbus.bridge")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
