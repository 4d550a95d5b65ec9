"""The Green-AI ledger of one run: time, memory and energy, written to ``energy.json``.

``EnergyMeter`` wraps a block of work and measures:

* wall time and process CPU time (this process and its waited-for children, getrusage);
* peak host RSS *of the block*: Linux resets the high-water mark when ``5`` is written to
  ``/proc/self/clear_refs``; where that is refused, the process-lifetime peak (``ru_maxrss``);
* on CUDA: the GPU elapsed time between two CUDA events at the block's ends (GPU timeline
  time, idle gaps included) and ``torch.cuda.max_memory_allocated``;
* energy, from the first source that works, and always labelled with how it was obtained:

  1. ``codecarbon``: CodeCarbon's ``OfflineEmissionsTracker`` (no network). It reads RAPL
     for the CPU and NVML for NVIDIA GPUs where it can; otherwise it models the CPU as
     TDP x load (4 W per thread for an unknown CPU) and RAM as a constant power, so the
     figure is a *measurement* only for the parts listed under ``measured``.
  2. ``rapl``: the package energy counters in ``/sys/class/powercap/intel-rapl:*`` (read
     directly, wrap-around handled). Machine-wide, not per process; root-only on Linux
     >= 5.10 (CVE-2020-8694), so often unreadable.
  3. ``estimate``: CPU seconds x ``WATTS_PER_CORE``. No GPU energy.

Carbon is not reported: it depends on the grid's intensity, which the user knows and we
do not; multiply ``energy_wh`` by it.
"""

from __future__ import annotations

import logging
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from securefed.run.folder import ENERGY, read_json, write_json

EnergySource = Literal["codecarbon", "rapl", "estimate"]
DEFAULT_SOURCES: tuple[EnergySource, ...] = ("codecarbon", "rapl", "estimate")

# Power drawn by one fully busy core, for the ``estimate`` source. 4 W is CodeCarbon's
# documented fallback for an unknown CPU (4 W per thread) and close to TDP / cores of current
# server parts: AMD EPYC 9654 360 W / 96 cores = 3.75 W; Intel Xeon 8480+ 350 W / 56 = 6.25 W.
WATTS_PER_CORE = 4.0
RAPL_ROOT = Path("/sys/class/powercap")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")
_KWH_TO_WH = 1000.0
ENERGY_KINDS = ("estimate", "partly measured", "measured")  # weakest first


# ---- hardware counters -----------------------------------------------------------------------
def read_rapl(root: Path = RAPL_ROOT) -> dict[str, tuple[int, int]] | None:
    """``{domain: (energy_uj, max_energy_range_uj)}`` for each RAPL package, or None if unreadable.

    Only top-level packages (``intel-rapl:N``) are read: their sub-domains (core, uncore,
    dram on some parts) are already inside the package figure.
    """
    domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    out: dict[str, tuple[int, int]] = {}
    for domain in domains:
        try:
            energy = int((domain / "energy_uj").read_text())
            wrap = int((domain / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            return None
        out[domain.name] = (energy, wrap)
    return out or None


def rapl_joules(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> float:
    """Energy between two RAPL readings, allowing each counter to wrap once."""
    total_uj = 0
    for name, (start, wrap) in before.items():
        end = after[name][0]
        total_uj += end - start if end >= start else end + wrap - start
    return total_uj / 1e6


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes(block_scope: bool) -> int:
    if block_scope:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ---- CodeCarbon ------------------------------------------------------------------------------
class _CodeCarbon:
    """CodeCarbon's offline tracker in process mode; raises ImportError when not installed."""

    def __init__(self) -> None:
        from codecarbon import OfflineEmissionsTracker

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        # country_iso_code is required offline for its CO2 figure, which we do not report.
        self.tracker = OfflineEmissionsTracker(
            country_iso_code="USA",
            output_methods=[],
            log_level="error",
            tracking_mode="process",
            measure_power_secs=10,
        )

    @classmethod
    def start_if_installed(cls) -> _CodeCarbon | None:
        try:
            tracker = cls()
        except ImportError:
            return None
        tracker.tracker.start()
        return tracker

    def stop(self) -> dict[str, Any] | None:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        if data is None:  # CodeCarbon swallows its own errors; fall back
            return None
        rapl = read_rapl() is not None
        measured = (["cpu (RAPL)"] if rapl else []) + (["gpu (NVML)"] if data.gpu_count else [])
        modelled = ([] if rapl else ["cpu"]) + ["ram"]
        return {
            "source": "codecarbon",
            "kind": "partly measured" if measured else "estimate",
            "energy_wh": data.energy_consumed * _KWH_TO_WH,
            "components_wh": {
                "cpu": data.cpu_energy * _KWH_TO_WH,
                "gpu": data.gpu_energy * _KWH_TO_WH,
                "ram": data.ram_energy * _KWH_TO_WH,
            },
            "measured": measured,
            "modelled": modelled,
            "basis": (
                f"CodeCarbon {data.codecarbon_version} OfflineEmissionsTracker, process "
                f"mode, cpu {data.cpu_model!r} x{data.cpu_count:g}; modelled parts use "
                "CodeCarbon's TDP x load (CPU) and constant-power (RAM) models"
            ),
        }


# ---- the meter -------------------------------------------------------------------------------
class EnergyMeter:
    """Measure a block: ``with EnergyMeter() as meter: ...`` then ``meter.report()``.

    ``sources`` is the energy fallback chain, tried in order; ``estimate`` always closes it.
    A source that is not installed (codecarbon) or not readable (rapl) is skipped.
    """

    def __init__(
        self, sources: Sequence[EnergySource] = DEFAULT_SOURCES, rapl_root: Path = RAPL_ROOT
    ) -> None:
        unknown = set(sources) - set(DEFAULT_SOURCES)
        if unknown:
            raise ValueError(f"unknown energy sources {sorted(unknown)}; known: {DEFAULT_SOURCES}")
        self.sources = tuple(sources)
        self.rapl_root = rapl_root
        self._report: dict[str, Any] | None = None

    def __enter__(self) -> EnergyMeter:
        self._codecarbon = (
            _CodeCarbon.start_if_installed() if "codecarbon" in self.sources else None
        )
        wants_rapl = "rapl" in self.sources and self._codecarbon is None
        self._rapl_before = read_rapl(self.rapl_root) if wants_rapl else None
        self._gpu = _GpuTimer.start_if_available()
        self._block_rss = _reset_peak_rss()
        self._wall0, self._cpu0 = time.perf_counter(), _cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        wall_s = time.perf_counter() - self._wall0
        cpu_s = _cpu_seconds() - self._cpu0
        gpu = self._gpu.stop() if self._gpu is not None else None
        energy = self._codecarbon.stop() if self._codecarbon is not None else None
        rapl_after = read_rapl(self.rapl_root) if self._rapl_before is not None else None
        if energy is None and rapl_after is not None:
            energy = {
                "source": "rapl",
                "kind": "measured",
                "energy_wh": rapl_joules(self._rapl_before, rapl_after) / 3600.0,
                "measured": ["cpu packages (RAPL, machine-wide)"],
                "modelled": [],
                "basis": f"RAPL package counters under {self.rapl_root}",
            }
        if energy is None:
            energy = {
                "source": "estimate",
                "kind": "estimate",
                "energy_wh": cpu_s * WATTS_PER_CORE / 3600.0,
                "measured": [],
                "modelled": ["cpu"],
                "basis": f"ESTIMATE: process CPU seconds x {WATTS_PER_CORE} W per busy "
                "core (securefed.run.energy.WATTS_PER_CORE); GPU energy not counted",
            }
        self._report = {
            "wall_s": wall_s,
            "cpu_s": cpu_s,
            "peak_rss_bytes": _peak_rss_bytes(self._block_rss),
            "peak_rss_scope": "block" if self._block_rss else "process",
            "gpu": gpu,
            "energy": energy,
        }

    def report(self) -> dict[str, Any]:
        """What was measured (call after the ``with`` block)."""
        if self._report is None:
            raise RuntimeError("EnergyMeter.report() is available after the with-block ends")
        return self._report


class _GpuTimer:
    """CUDA events around the block and the allocator's peak; absent without CUDA."""

    def __init__(self, torch_module: Any) -> None:
        self.torch = torch_module
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()
        self.begin = self.torch.cuda.Event(enable_timing=True)
        self.begin.record()

    @classmethod
    def start_if_available(cls) -> _GpuTimer | None:
        import torch

        return cls(torch) if torch.cuda.is_available() else None

    def stop(self) -> dict[str, Any]:
        end = self.torch.cuda.Event(enable_timing=True)
        end.record()
        self.torch.cuda.synchronize()
        return {
            "device": self.torch.cuda.get_device_name(),
            "elapsed_s": self.begin.elapsed_time(end) / 1000.0,
            "peak_memory_bytes": int(self.torch.cuda.max_memory_allocated()),
        }


# ---- the run folder's energy.json ------------------------------------------------------------
def record_energy(run_dir: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """Append one invocation's report to ``<run_dir>/energy.json``; returns the updated file.

    A resumed run is several invocations; ``total`` sums their time and energy and keeps the
    largest peaks, so a killed-and-resumed run still reports what the work cost.
    """
    path = Path(run_dir) / ENERGY
    invocations = read_json(path)["invocations"] if path.is_file() else []
    invocations.append(report)
    ledger = {"invocations": invocations, "total": total_energy(invocations)}
    write_json(path, ledger)
    return ledger


def total_energy(invocations: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums (time, energy) and maxima (memory) over a run's invocations."""
    gpus = [r["gpu"] for r in invocations if r.get("gpu")]
    sources = sorted({r["energy"]["source"] for r in invocations})
    return {
        "wall_s": sum(r["wall_s"] for r in invocations),
        "cpu_s": sum(r["cpu_s"] for r in invocations),
        "gpu_elapsed_s": sum(g["elapsed_s"] for g in gpus) if gpus else None,
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in invocations),
        "peak_gpu_memory_bytes": max(g["peak_memory_bytes"] for g in gpus) if gpus else None,
        "energy_wh": sum(r["energy"]["energy_wh"] for r in invocations),
        "energy_source": "+".join(sources),
        "energy_kind": min((r["energy"]["kind"] for r in invocations), key=ENERGY_KINDS.index),
        "invocations": len(invocations),
    }
