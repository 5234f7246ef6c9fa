"""murmur2 / Kafka default partitioner compatibility."""

from __future__ import annotations

import pytest

from features.partitioning import kafka_partition, murmur2

# Apache Kafka, clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2.
KAFKA_UTILS_TEST = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]

# kafka-python, test/test_partitioner.py, test_murmur2_java_compatibility: partitions out of 1000,
# "compare with output from Kafka's org.apache.kafka.clients.producer.Partitioner".
KAFKA_PYTHON_PARTITIONS = [
    (b"", 681),
    (b"a", 524),
    (b"ab", 434),
    (b"abc", 107),
    (b"123456789", 566),
    (b"\x00 ", 742),
]


@pytest.mark.parametrize(("data", "expected"), KAFKA_UTILS_TEST)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@pytest.mark.parametrize(("data", "expected"), KAFKA_PYTHON_PARTITIONS)
def test_partition_matches_java_client(data: bytes, expected: int) -> None:
    assert kafka_partition(data, 1000) == expected


def test_partition_range_and_errors() -> None:
    assert all(0 <= kafka_partition(str(i).encode(), 7) < 7 for i in range(200))
    assert kafka_partition(b"\xff" * 1000, 3) in range(3)
    with pytest.raises(ValueError):
        kafka_partition(b"x", 0)


def test_entity_partitioner_agrees_with_kafka_partition_and_is_bounded() -> None:
    from features.partitioning import entity_partitioner

    partition_of = entity_partitioner(7, cache_size=4)
    ids = [f"patient-{i}" for i in range(50)]
    assert [partition_of(e) for e in ids] == [kafka_partition(e.encode(), 7) for e in ids]
    assert partition_of.cache_info().currsize == 4  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        entity_partitioner(0)
