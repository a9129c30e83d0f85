"""Kafka's murmur2 and its default keyed partitioner, bit for bit, so a key
lands in the same partition number as it would in Kafka."""
import random

import pytest

from shmbus._backend import murmur2
from shmbus._route import murmur2_partition

from buskit import reference_murmur2


# From Kafka's UtilsTest.testMurmur2.
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize("key, expected", KAFKA_VECTORS)
def test_murmur2_matches_kafka_vectors(key, expected):
    assert murmur2(key) == expected
    assert reference_murmur2(key) == expected


def test_murmur2_matches_reference_on_random_keys():
    # Every length mod 4 and bytes above 0x7f (Java's signed bytes are masked).
    rng = random.Random(7)
    for length in range(0, 70):
        for _ in range(5):
            key = bytes(rng.randrange(256) for _ in range(length))
            assert murmur2(key) == reference_murmur2(key), key


@pytest.mark.parametrize("partitions", [1, 2, 3, 7, 16, 1000])
def test_keyed_partition_is_positive_murmur2_modulo_partitions(partitions):
    for key, _ in KAFKA_VECTORS:
        expected = (reference_murmur2(key) & 0x7FFFFFFF) % partitions
        assert murmur2_partition(key, partitions) == expected
    for i in range(200):
        key = f"device-{i}".encode()
        assert murmur2_partition(key, partitions) == (reference_murmur2(key) & 0x7FFFFFFF) % partitions
