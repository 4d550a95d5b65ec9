"""The Green-AI ledger: time, memory and energy of a block, and the run folder's energy.json."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from securefed.run.energy import (
    WATTS_PER_CORE,
    EnergyMeter,
    rapl_joules,
    read_rapl,
    record_energy,
    total_energy,
)


def _busy(seconds_of_work: int = 2_000_000) -> int:
    return sum(i * i for i in range(seconds_of_work))


def _fake_rapl(root: Path, energy_uj: int, wrap: int = 2**32) -> Path:
    package = root / "intel-rapl:0"
    package.mkdir(parents=True, exist_ok=True)
    (package / "energy_uj").write_text(f"{energy_uj}\n")
    (package / "max_energy_range_uj").write_text(f"{wrap}\n")
    core = root / "intel-rapl:0:0"  # a sub-domain: already inside the package figure
    core.mkdir(exist_ok=True)
    (core / "energy_uj").write_text("999999999\n")
    (core / "max_energy_range_uj").write_text(f"{wrap}\n")
    return package


def test_estimate_is_cpu_seconds_times_the_stated_power_and_says_so():
    with EnergyMeter(sources=("estimate",)) as meter:
        _busy()
    report = meter.report()
    assert report["cpu_s"] > 0 and report["wall_s"] > 0
    energy = report["energy"]
    assert energy["source"] == "estimate" and energy["kind"] == "estimate"
    assert energy["energy_wh"] == pytest.approx(report["cpu_s"] * WATTS_PER_CORE / 3600)
    assert "ESTIMATE" in energy["basis"] and f"{WATTS_PER_CORE} W" in energy["basis"]
    assert report["gpu"] is None or report["gpu"]["elapsed_s"] >= 0


def test_rapl_counters_are_read_as_measured_energy(tmp_path):
    package = _fake_rapl(tmp_path, energy_uj=1_000_000)
    with EnergyMeter(sources=("rapl", "estimate"), rapl_root=tmp_path) as meter:
        (package / "energy_uj").write_text(str(1_000_000 + 3_600_000_000))  # + 3600 J
    energy = meter.report()["energy"]
    assert energy["source"] == "rapl" and energy["kind"] == "measured"
    assert energy["energy_wh"] == pytest.approx(1.0)


def test_rapl_wraps_once_and_ignores_sub_domains(tmp_path):
    _fake_rapl(tmp_path, energy_uj=10)
    assert read_rapl(tmp_path) == {"intel-rapl:0": (10, 2**32)}
    before = {"intel-rapl:0": (2**32 - 1_000_000, 2**32)}
    after = {"intel-rapl:0": (2_000_000, 2**32)}
    assert rapl_joules(before, after) == pytest.approx(3.0)


def test_unreadable_rapl_falls_back_to_the_estimate(tmp_path):
    package = _fake_rapl(tmp_path, energy_uj=5)
    (package / "energy_uj").chmod(0)  # as on Linux >= 5.10 for non-root users
    readable = True
    try:
        (package / "energy_uj").read_text()
    except PermissionError:
        readable = False
    if readable:  # running as root: make it unreadable another way
        (package / "energy_uj").chmod(0o644)
        (package / "energy_uj").write_text("not a number")
    assert read_rapl(tmp_path) is None
    with EnergyMeter(sources=("rapl", "estimate"), rapl_root=tmp_path) as meter:
        _busy(100_000)
    assert meter.report()["energy"]["source"] == "estimate"


def test_peak_host_memory_covers_the_block():
    size = 256 * 1024 * 1024
    with EnergyMeter(sources=("estimate",)) as big:
        block = np.ones(size, dtype=np.uint8)  # touched, so resident
        del block
    with EnergyMeter(sources=("estimate",)) as small:
        _busy(10_000)
    big_peak, small_peak = big.report()["peak_rss_bytes"], small.report()["peak_rss_bytes"]
    assert big_peak >= size
    if small.report()["peak_rss_scope"] == "block":  # Linux clear_refs: per-block peaks
        assert small_peak < big_peak - size // 2


def test_report_before_the_block_ends_is_an_error():
    meter = EnergyMeter(sources=("estimate",))
    with pytest.raises(RuntimeError, match="after the with-block"):
        meter.report()


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="unknown energy sources"):
        EnergyMeter(sources=("joulemeter",))


def _report(wall: float, cpu: float, wh: float, rss: int, kind: str) -> dict:
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_bytes": rss,
        "peak_rss_scope": "block",
        "gpu": None,
        "energy": {"source": "x", "kind": kind, "energy_wh": wh},
    }


def test_energy_json_accumulates_the_invocations_of_a_resumed_run(tmp_path):
    record_energy(tmp_path, _report(10.0, 8.0, 0.5, 100, "measured"))
    record_energy(tmp_path, _report(5.0, 4.0, 0.25, 300, "estimate"))
    ledger = record_energy(tmp_path, _report(1.0, 1.0, 0.25, 200, "measured"))
    assert json.loads((tmp_path / "energy.json").read_text()) == ledger
    total = ledger["total"]
    assert total["invocations"] == 3
    assert (total["wall_s"], total["cpu_s"], total["energy_wh"]) == (16.0, 13.0, 1.0)
    # the largest peak, not the first, the last or their sum: a resumed run's peak is its
    # largest invocation's
    assert total["peak_rss_bytes"] == 300
    assert total["energy_kind"] == "estimate"  # the weakest part labels the whole
    assert total["gpu_elapsed_s"] is None and total["peak_gpu_memory_bytes"] is None


def test_total_keeps_gpu_peaks_and_sums_gpu_time():
    a = _report(1, 1, 0.1, 1, "measured") | {"gpu": {"elapsed_s": 2.0, "peak_memory_bytes": 7}}
    b = _report(1, 1, 0.1, 1, "measured") | {"gpu": {"elapsed_s": 3.0, "peak_memory_bytes": 5}}
    total = total_energy([a, b])
    assert total["gpu_elapsed_s"] == 5.0 and total["peak_gpu_memory_bytes"] == 7


@pytest.mark.skipif(importlib.util.find_spec("codecarbon") is None, reason="codecarbon absent")
def test_codecarbon_offline_tracker_reports_energy_and_what_it_modelled():
    with EnergyMeter(sources=("codecarbon", "estimate")) as meter:
        _busy()
    energy = meter.report()["energy"]
    assert energy["source"] == "codecarbon"
    assert energy["energy_wh"] > 0 and math.isfinite(energy["energy_wh"])
    assert energy["energy_wh"] == pytest.approx(sum(energy["components_wh"].values()))
    assert "ram" in energy["modelled"]
    assert energy["kind"] in ("estimate", "partly measured")


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_gpu_time_and_peak_memory_are_recorded():
    import torch

    with EnergyMeter(sources=("estimate",)) as meter:
        x = torch.ones(64 * 1024 * 1024, device="cuda")  # 256 MiB
        (x @ x).item()
    gpu = meter.report()["gpu"]
    assert gpu["peak_memory_bytes"] >= 256 * 1024 * 1024 and gpu["elapsed_s"] > 0
