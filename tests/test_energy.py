"""Energy counters, read from a fake powercap tree (DNNBENCH_POWERCAP_ROOT) and a fake clock."""

import importlib.util
import os
from pathlib import Path

import pytest

from dnnbench.measure.energy import POWERCAP_ENV, RaplMeter, idle_power, open_meter

RANGE_UJ = 262_143_328_850


def zone(root, dirname, name, energy_uj=0, range_uj=RANGE_UJ):
    path = root / dirname
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return path


def set_energy(root, dirname, energy_uj):
    (root / dirname / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path, monkeypatch):
    """Two packages, a core sub-zone and a psys zone (both of which must not be counted)."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)
    zone(root, "intel-rapl:1", "package-1", 2_000_000, range_uj=10_000_000)
    zone(root, "intel-rapl:2", "psys", 7_000_000)
    monkeypatch.setenv(POWERCAP_ENV, str(root))
    return root


def test_open_meter_finds_the_two_packages(powercap):
    meter, reason = open_meter("cpu")
    assert reason is None and isinstance(meter, RaplMeter)
    assert [z.path.name for z in meter.zones] == ["intel-rapl:0", "intel-rapl:1"]
    assert [z.range_uj for z in meter.zones] == [RANGE_UJ, 10_000_000]
    assert meter.source == "rapl"


def test_energy_is_summed_over_packages_only(powercap):
    meter, _ = open_meter("cpu")
    start = meter.begin()
    assert start == [1_000_000, 2_000_000]
    set_energy(powercap, "intel-rapl:0", 4_000_000)  # +3 J
    set_energy(powercap, "intel-rapl:1", 2_500_000)  # +0.5 J
    set_energy(powercap, "intel-rapl:0:0", 99_000_000)  # sub-zone: inside package 0 already
    set_energy(powercap, "intel-rapl:2", 99_000_000)  # psys: not a package
    assert meter.end(start) == pytest.approx(3.5)


def test_a_wrapped_counter_is_undone(powercap):
    meter, _ = open_meter("cpu")
    set_energy(powercap, "intel-rapl:1", 9_000_000)
    start = meter.begin()
    set_energy(powercap, "intel-rapl:1", 1_000_000)  # wrapped at 10 J: 1 J to the top, 1 J after
    set_energy(powercap, "intel-rapl:0", 1_250_000)  # +0.25 J, no wrap
    assert meter.end(start) == pytest.approx(2.25)


def test_amd_zones_are_counted(tmp_path, monkeypatch):
    zone(tmp_path, "amd-rapl:0", "package-0", 10)
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path))
    meter, reason = open_meter("cpu")
    assert reason is None and [z.path.name for z in meter.zones] == ["amd-rapl:0"]


def test_missing_root(tmp_path, monkeypatch):
    root = tmp_path / "no-such-dir"
    monkeypatch.setenv(POWERCAP_ENV, str(root))
    meter, reason = open_meter("cpu")
    assert meter is None and str(root) in reason


def test_no_package_domain(tmp_path, monkeypatch):
    zone(tmp_path, "intel-rapl:0", "psys")
    zone(tmp_path, "intel-rapl:0:0", "package-0")  # a sub-zone, even if named like a package
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path))
    meter, reason = open_meter("cpu")
    assert meter is None and "package" in reason and str(tmp_path) in reason


def test_empty_root(tmp_path, monkeypatch):
    monkeypatch.setenv(POWERCAP_ENV, str(tmp_path))
    meter, reason = open_meter("cpu")
    assert meter is None and "package" in reason


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_counter_readable_by_root_only(powercap):
    (powercap / "intel-rapl:1" / "energy_uj").chmod(0)
    meter, reason = open_meter("cpu")
    assert meter is None and "root" in reason and "chmod" in reason


def test_counter_readable_by_root_only_simulated(powercap, monkeypatch):
    # the same refusal as above, for runs as root: the kernel's PermissionError, raised by hand
    real_read_text = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "energy_uj" and self.parent.name == "intel-rapl:1":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    meter, reason = open_meter("cpu")
    assert meter is None and "root" in reason and "chmod" in reason and str(powercap) in reason


def test_unparseable_counter(powercap):
    set_energy(powercap, "intel-rapl:0", "n/a")
    meter, reason = open_meter("cpu")
    assert meter is None and "intel-rapl:0" in reason


class FakeTime:
    """``sleep(s)`` advances the clock by s and the package counter by ``watts * s``."""

    def __init__(self, root, dirname, watts):
        self.root, self.dirname, self.watts = root, dirname, watts
        self.t = 100.0
        self.slept = []

    def clock(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds
        path = self.root / self.dirname / "energy_uj"
        set_energy(self.root, self.dirname, int(path.read_text()) + round(self.watts * seconds * 1e6))


def test_idle_power(powercap):
    meter, _ = open_meter("cpu")
    fake = FakeTime(powercap, "intel-rapl:0", watts=12.5)
    watts = idle_power(meter, seconds=2.0, sleep=fake.sleep, clock=fake.clock)
    assert fake.slept == [2.0]
    assert watts == pytest.approx(12.5)


def test_idle_power_across_a_wrap(powercap):
    meter, _ = open_meter("cpu")
    set_energy(powercap, "intel-rapl:1", 9_900_000)  # wraps at 10 J within the 4 s below
    fake = FakeTime(powercap, "intel-rapl:1", watts=0.0)

    def sleep(seconds):
        fake.sleep(seconds)
        set_energy(powercap, "intel-rapl:1", 700_000)  # 0.1 J to the top, 0.7 J after: 0.8 J

    assert idle_power(meter, seconds=4.0, sleep=sleep, clock=fake.clock) == pytest.approx(0.2)


@pytest.mark.skipif(importlib.util.find_spec("pynvml") is not None, reason="nvidia-ml-py is installed")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_nvml(device, powercap):
    meter, reason = open_meter(device)
    assert meter is None and "nvidia-ml-py" in reason
