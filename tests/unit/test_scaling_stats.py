"""Docker stats payloads (cgroup v1 and v2, one-shot and streamed) as CPU units, MiB and ECS utilization.

The payloads have the shape `GET /containers/{id}/stats?stream=false&one-shot=true` returns on Docker 20.10+
(cgroup v1: percpu_usage, memory `stats` with totals and `cache`; cgroup v2: no percpu_usage, memory `stats`
with `anon`/`file`/`inactive_file`), with numbers chosen so the expected results are exact.
"""

from __future__ import annotations

import copy
import json

import pytest

from reconciler.scaling import stats

MIB = 1024 * 1024

V1_ONE_SHOT = """{
  "read": "2025-06-02T12:00:10.000000000Z",
  "preread": "0001-01-01T00:00:00Z",
  "pids_stats": {"current": 5, "limit": 18446744073709551615},
  "blkio_stats": {
    "io_service_bytes_recursive": [{"major": 8, "minor": 0, "op": "Read", "value": 1232896},
                                   {"major": 8, "minor": 0, "op": "Write", "value": 0}],
    "io_serviced_recursive": [{"major": 8, "minor": 0, "op": "Read", "value": 22}],
    "io_queue_recursive": [], "io_service_time_recursive": [], "io_wait_time_recursive": [],
    "io_merged_recursive": [], "io_time_recursive": [], "sectors_recursive": []
  },
  "num_procs": 0,
  "storage_stats": {},
  "cpu_stats": {
    "cpu_usage": {"total_usage": 10000000000, "percpu_usage": [6000000000, 4000000000],
                  "usage_in_kernelmode": 2000000000, "usage_in_usermode": 8000000000},
    "system_cpu_usage": 100020000000000,
    "online_cpus": 2,
    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
  },
  "precpu_stats": {
    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
  },
  "memory_stats": {
    "usage": 268435456,
    "max_usage": 301989888,
    "stats": {
      "active_anon": 201326592, "active_file": 33554432, "cache": 67108864, "dirty": 0,
      "hierarchical_memory_limit": 536870912, "hierarchical_memsw_limit": 1073741824,
      "inactive_anon": 0, "inactive_file": 33554432, "mapped_file": 4096, "pgfault": 81234,
      "pgmajfault": 3, "pgpgin": 70000, "pgpgout": 4000, "rss": 201326592, "rss_huge": 0,
      "total_active_anon": 201326592, "total_active_file": 33554432, "total_cache": 67108864,
      "total_dirty": 0, "total_inactive_anon": 0, "total_inactive_file": 33554432,
      "total_mapped_file": 4096, "total_pgfault": 81234, "total_pgmajfault": 3, "total_pgpgin": 70000,
      "total_pgpgout": 4000, "total_rss": 201326592, "total_rss_huge": 0, "total_unevictable": 0,
      "total_writeback": 0, "unevictable": 0, "writeback": 0
    },
    "limit": 536870912
  },
  "name": "/ecs-web-1-a1b2",
  "id": "3f1c0de5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7",
  "networks": {"eth0": {"rx_bytes": 5338, "rx_packets": 36, "rx_errors": 0, "rx_dropped": 0,
                         "tx_bytes": 648, "tx_packets": 8, "tx_errors": 0, "tx_dropped": 0}}
}"""

V2_ONE_SHOT = """{
  "read": "2025-06-02T12:00:10.25Z",
  "preread": "0001-01-01T00:00:00Z",
  "pids_stats": {"current": 3, "limit": 4915},
  "blkio_stats": {"io_service_bytes_recursive": [{"major": 254, "minor": 0, "op": "read", "value": 4096}],
                  "io_serviced_recursive": null, "io_queue_recursive": null, "io_service_time_recursive": null,
                  "io_wait_time_recursive": null, "io_merged_recursive": null, "io_time_recursive": null,
                  "sectors_recursive": null},
  "num_procs": 0,
  "storage_stats": {},
  "cpu_stats": {
    "cpu_usage": {"total_usage": 2500000000, "usage_in_kernelmode": 500000000, "usage_in_usermode": 2000000000},
    "system_cpu_usage": 200040000000000,
    "online_cpus": 4,
    "throttling_data": {"periods": 120, "throttled_periods": 3, "throttled_time": 41000000}
  },
  "precpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                   "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
  "memory_stats": {
    "usage": 209715200,
    "stats": {
      "active_anon": 0, "active_file": 31457280, "anon": 104857600, "anon_thp": 0, "file": 94371840,
      "file_dirty": 0, "file_mapped": 0, "file_writeback": 0, "inactive_anon": 104857600,
      "inactive_file": 52428800, "kernel_stack": 49152, "pgactivate": 0, "pgdeactivate": 0, "pgfault": 1650,
      "pglazyfree": 0, "pglazyfreed": 0, "pgmajfault": 0, "pgrefill": 0, "pgscan": 0, "pgsteal": 0,
      "shmem": 0, "slab": 1234560, "slab_reclaimable": 600000, "slab_unreclaimable": 634560, "sock": 0,
      "thp_collapse_alloc": 0, "thp_fault_alloc": 0, "unevictable": 0, "workingset_activate": 0,
      "workingset_nodereclaim": 0, "workingset_refault": 0
    },
    "limit": 8241434624
  },
  "name": "/ecs-api-1-c3d4",
  "id": "9a8b7c6d5e4f30211a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8b",
  "networks": {"eth0": {"rx_bytes": 1046, "rx_packets": 11, "rx_errors": 0, "rx_dropped": 0,
                         "tx_bytes": 0, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0}}
}"""


def sample(text: str, *, seconds_earlier: float, cpu_ns: int, online: int) -> dict:
    """An earlier one-shot sample of the same container: `cpu_ns` less CPU time, `seconds_earlier` before."""
    cur = json.loads(text)
    prev = copy.deepcopy(cur)
    prev["cpu_stats"]["cpu_usage"]["total_usage"] -= cpu_ns
    prev["cpu_stats"]["system_cpu_usage"] -= int(seconds_earlier * online * 1e9)
    read_ns = stats.read_ns(cur["read"]) - int(seconds_earlier * 1e9)
    prev["read"] = f"2025-06-02T12:00:{read_ns % 60_000_000_000 / 1e9:012.9f}Z"
    return prev


@pytest.fixture
def v1():
    cur = json.loads(V1_ONE_SHOT)
    return sample(V1_ONE_SHOT, seconds_earlier=10, cpu_ns=5_000_000_000, online=2), cur  # 0.5 core for 10 s


@pytest.fixture
def v2():
    cur = json.loads(V2_ONE_SHOT)
    return sample(V2_ONE_SHOT, seconds_earlier=10, cpu_ns=2_500_000_000, online=4), cur  # 0.25 core


def test_read_ns():
    assert stats.read_ns("2025-06-02T12:00:10.000000001Z") % 10**9 == 1
    assert stats.read_ns("2025-06-02T12:00:10.25Z") - stats.read_ns("2025-06-02T12:00:10Z") == 250_000_000
    assert stats.read_ns("2025-06-02T14:00:10+02:00") == stats.read_ns("2025-06-02T12:00:10Z")
    assert stats.read_ns("0001-01-01T00:00:00Z") is None
    assert stats.read_ns("yesterday") is None and stats.read_ns(None) is None


def test_cpu_from_two_one_shot_samples_v1(v1):
    prev, cur = v1
    assert prev["read"] == "2025-06-02T12:00:00.000000000Z"
    assert stats.cpu_units_used(prev, cur) == pytest.approx(512.0)


def test_cpu_from_two_one_shot_samples_v2(v2):
    prev, cur = v2
    assert stats.cpu_units_used(prev, cur) == pytest.approx(256.0)


def test_cpu_falls_back_to_read_timestamps(v1):
    prev, cur = v1
    del prev["cpu_stats"]["system_cpu_usage"], cur["cpu_stats"]["system_cpu_usage"]
    assert stats.cpu_units_used(prev, cur) == pytest.approx(512.0)


def test_online_cpus_falls_back_to_percpu_usage(v1):
    prev, cur = v1
    del cur["cpu_stats"]["online_cpus"]
    assert stats.cpu_units_used(prev, cur) == pytest.approx(512.0)


def test_one_shot_sample_alone_is_not_enough(v1):
    _, cur = v1
    assert stats.cpu_units_used(None, cur) is None


def test_streamed_sample_with_precpu_is_enough_alone(v2):
    prev, cur = v2
    cur["precpu_stats"] = prev["cpu_stats"]
    cur["preread"] = prev["read"]
    assert stats.cpu_units_used(None, cur) == pytest.approx(256.0)


def test_restarted_container_or_other_container_gives_none(v1):
    prev, cur = v1
    restarted = copy.deepcopy(cur)
    restarted["cpu_stats"]["cpu_usage"]["total_usage"] = 1000
    assert stats.cpu_units_used(prev, restarted) is None
    other = copy.deepcopy(prev)
    other["id"] = "another"
    assert stats.cpu_units_used(other, cur) is None
    assert stats.cpu_units_used(cur, cur) is None  # no time passed


def test_memory_v1_subtracts_total_inactive_file(v1):
    _, cur = v1
    assert stats.memory_mib_used(cur) == pytest.approx(256 - 32)


def test_memory_v1_without_totals_subtracts_cache(v1):
    _, cur = v1
    del cur["memory_stats"]["stats"]["total_inactive_file"]
    assert stats.memory_mib_used(cur) == pytest.approx(256 - 64)


def test_memory_v2_subtracts_inactive_file(v2):
    _, cur = v2
    assert stats.memory_mib_used(cur) == pytest.approx(200 - 50)


def test_memory_cache_larger_than_usage_is_not_subtracted(v2):
    _, cur = v2
    cur["memory_stats"]["stats"]["inactive_file"] = 300 * MIB
    assert stats.memory_mib_used(cur) == pytest.approx(200)


def test_stopped_container_has_no_memory():
    assert stats.memory_mib_used({"memory_stats": {}, "cpu_stats": {}}) is None
    assert stats.memory_mib_used({}) is None


def test_task_utilization_relative_to_reservation(v1, v2):
    cpu, memory = stats.task_utilization([v1, v2], reserved_cpu_units=1024, reserved_memory_mib=748)
    assert cpu == pytest.approx(75.0)  # (512 + 256) / 1024
    assert memory == pytest.approx(50.0)  # (224 + 150) / 748


def test_task_utilization_without_cpu_reservation_uses_one_vcpu(v1):
    cpu, _ = stats.task_utilization([v1], reserved_cpu_units=0, reserved_memory_mib=448)
    assert cpu == pytest.approx(50.0)
    cpu, _ = stats.task_utilization([v1], reserved_cpu_units=256, reserved_memory_mib=448)
    assert cpu == pytest.approx(200.0)  # a task may use more than it reserved


def test_task_utilization_without_memory_reservation_uses_the_limits(v1):
    _, memory = stats.task_utilization([v1], reserved_cpu_units=256, reserved_memory_mib=0)
    assert memory == pytest.approx(224 / 512 * 100)


def test_task_utilization_with_a_container_not_yet_measurable(v1, v2):
    _, cur2 = v2
    cpu, memory = stats.task_utilization([v1, (None, cur2)], reserved_cpu_units=1024, reserved_memory_mib=748)
    assert cpu == pytest.approx(50.0)  # only the measurable container counts
    assert memory == pytest.approx(50.0)
    assert stats.task_utilization([(None, json.loads(V1_ONE_SHOT))], 1024, 0)[0] is None
    assert stats.task_utilization([], 1024, 512) == (None, None)


def test_service_utilization_is_the_mean_of_tasks_with_values():
    assert stats.service_utilization([(50.0, 20.0), (70.0, None), (None, 40.0)]) == (60.0, 30.0)
    assert stats.service_utilization([]) == (None, None)
