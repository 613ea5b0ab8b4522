"""Table tests for reconciler.model.units: cpu/memory spellings, Fargate sizes, durations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.model import units


@pytest.mark.parametrize(
    "value, expected",
    [
        (256, 256),
        (0, 0),
        (1024.0, 1024),
        ("1024", 1024),
        (" 512 ", 512),
        ("1 vCPU", 1024),
        ("1 vcpu", 1024),
        ("1vCPU", 1024),
        (".25 vCPU", 256),
        (".5 vcpu", 512),
        ("0.5vCPU", 512),
        ("0.125 VCPU", 128),
        ("2 vCpu", 2048),
        ("16 vCPU", 16384),
        ("1.5 vCPU", 1536),
    ],
)
def test_parse_cpu_accepts(value, expected):
    assert units.parse_cpu(value) == expected


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("", "neither CPU units"),
        ("abc", "neither CPU units"),
        ("1 core", "neither CPU units"),
        ("1 GB", "neither CPU units"),
        ("-1", "neither CPU units"),
        ("1e3", "neither CPU units"),
        ("1 vCPU 2", "neither CPU units"),
        (". vCPU", "neither CPU units"),
        ("0.0001 vCPU", "not a whole number of CPU units"),
        (-5, "negative"),
        (0.5, "not a whole number"),
        (float("nan"), "not a whole number"),
        (float("inf"), "not a whole number"),
        (True, "not a boolean"),
        (None, "not NoneType"),
        ([1024], "not list"),
    ],
)
def test_parse_cpu_rejects(value, fragment):
    with pytest.raises(ValueError, match="cpu") as e:
        units.parse_cpu(value)
    assert fragment in str(e.value)


@pytest.mark.parametrize(
    "value, expected",
    [
        (512, 512),
        ("512", 512),
        ("2 GB", 2048),
        ("2GB", 2048),
        ("1 gb", 1024),
        ("0.5GB", 512),
        (".5 GB", 512),
        ("30 GB", 30720),
        ("512 MiB", 512),
        ("512mib", 512),
        ("1 GiB", 1024),
        (2048.0, 2048),
    ],
)
def test_parse_memory_accepts(value, expected):
    assert units.parse_memory(value) == expected


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("512 MB", "neither MiB"),
        ("2 TB", "neither MiB"),
        ("lots", "neither MiB"),
        ("", "neither MiB"),
        ("0.3 MiB", "not a whole number of MiB"),
        ("0.0001 GB", "not a whole number of MiB"),
        (-1, "negative"),
        (1.5, "not a whole number"),
        (False, "not a boolean"),
        ({"gb": 2}, "not dict"),
    ],
)
def test_parse_memory_rejects(value, fragment):
    with pytest.raises(ValueError, match="memory") as e:
        units.parse_memory(value)
    assert fragment in str(e.value)


@given(st.integers(min_value=0, max_value=10**9))
def test_parse_cpu_and_memory_round_trip_integers(n):
    assert units.parse_cpu(n) == units.parse_cpu(str(n)) == n
    assert units.parse_memory(n) == units.parse_memory(str(n)) == n


@given(st.integers(min_value=0, max_value=4096))
def test_vcpu_quarters(quarters):
    text = f"{quarters / 4} vCPU"
    assert units.parse_cpu(text) == quarters * 256


@given(st.text(max_size=20))
def test_parsers_raise_only_value_error(text):
    for parse in (units.parse_cpu, units.parse_memory, units.parse_duration):
        try:
            result = parse(text)
        except ValueError:
            continue
        assert isinstance(result, (int, float)) and result >= 0


def test_fargate_table_matches_reference():
    assert sorted(units.FARGATE_SIZES) == [256, 512, 1024, 2048, 4096, 8192, 16384]
    assert units.fargate_memory_options(256) == [512, 1024, 2048]
    assert units.fargate_memory_options(512) == [1024, 2048, 3072, 4096]
    assert units.fargate_memory_options(1024) == list(range(2048, 8193, 1024))
    assert units.fargate_memory_options(2048) == list(range(4096, 16385, 1024))
    assert units.fargate_memory_options(4096)[0] == 8192 and units.fargate_memory_options(4096)[-1] == 30720
    assert units.fargate_memory_options(8192) == list(range(16384, 61441, 4096))
    assert units.fargate_memory_options(16384) == list(range(32768, 122881, 8192))
    assert units.fargate_memory_options(384) == []
    assert units.fargate_memory_options(0) == []


@pytest.mark.parametrize(
    "values, text",
    [
        ([512, 1024, 2048], "512, 1024, 2048"),
        ([1024, 2048, 3072, 4096], "1024-4096 in steps of 1024"),
        ([1, 2, 4, 8], "1, 2, 4, 8"),
        ([], ""),
    ],
)
def test_format_mib_list(values, text):
    assert units.format_mib_list(values) == text


@pytest.mark.parametrize(
    "value, seconds",
    [
        (0, 0.0),
        (30, 30.0),
        (1.5, 1.5),
        ("30", 30.0),
        ("2.5", 2.5),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s", 3723.0),
        ("1s500ms", 1.5),
        ("1.5h", 5400.0),
        (" 10S ", 10.0),
        ("2M", 120.0),
    ],
)
def test_parse_duration_accepts(value, seconds):
    assert math.isclose(units.parse_duration(value), seconds)


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("5x", "not seconds or a string"),
        ("s", "not seconds or a string"),
        ("1m 30s", "not seconds or a string"),
        ("30s1m", "out of order"),
        ("1m1m", "repeats a unit"),
        ("-5s", "not seconds or a string"),
        ("1d", "not seconds or a string"),
        (-1, "non-negative"),
        (float("inf"), "finite"),
        (True, "not a boolean"),
        (None, "not NoneType"),
    ],
)
def test_parse_duration_rejects(value, fragment):
    with pytest.raises(ValueError) as e:
        units.parse_duration(value)
    assert fragment in str(e.value)
