import fcntl
import os
import warnings

import pytest
import torch

warnings.filterwarnings("ignore")
# sweeps started by the tests take a lock of their own, not the machine's (a user's sweep must not block them)
# (one per process of the suite: `pytest -n 2` starts its processes with the first one's environment)
_LOCK = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"dnnbench-tests-{os.getpid()}.lock")
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["DNNBENCH_LOCK"] = _LOCK
else:
    os.environ.setdefault("DNNBENCH_LOCK", _LOCK)
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _a_usual_record_of_its_own(tmp_path, monkeypatch):
    """Each test's sweeps check and keep this machine's usual cell times in a record of the test's own,
    not the user's (`store.usual`): a test's tiny cells must neither read nor become the user's usual."""
    monkeypatch.setenv("DNNBENCH_USUAL", str(tmp_path / "usual.sqlite"))


# What each file's tests need beyond this process, as markers (pyproject.toml lists them): the README's
# test command runs everything; the fast command for development deselects these.
NEEDS = {
    "test_run.py": ("process",), "test_busy.py": ("process",), "test_contract.py": ("process",),
    "test_eval.py": ("process", "backends"), "test_predict_run.py": ("process",), "test_api.py": ("process",),
    "test_cli.py": ("process",), "test_bad_input.py": ("process",), "test_answer.py": ("process",),
    "test_search.py": ("process",), "test_setups.py": ("process", "backends"), "test_backends.py": ("backends",),
    "test_runtime_kernels.py": ("process", "backends"),
    "test_cluster.py": ("cluster", "process"), "test_docs.py": ("process", "slow"),
    "test_zoo_forward.py": ("slow",),
}


# Tests that need the machine to themselves: they make loads and check that they are seen and
# outlasted, or run with the default --on-busy wait (the README's lines, as a user pastes them), or need
# undisturbed cells to follow a path through (a disturbed cell is not recorded as this machine's usual)
ALONE = {"test_busy.py": None, "test_docs.py": {"test_every_line_of_the_readme_python_section_runs"},
         "test_run.py": {"test_a_second_run_in_another_database_is_checked_against_the_first_on_this_machine"}}


def pytest_collection_modifyitems(items):
    for item in items:
        for name in NEEDS.get(item.path.name, ()):
            item.add_marker(name)
        if item.path.name == "test_cluster.py":  # one local Ray cluster: its tests in one process
            item.add_marker(pytest.mark.xdist_group("cluster"))
        if item.path.name in ALONE and (ALONE[item.path.name] is None or item.name in ALONE[item.path.name]):
            item.add_marker("alone")
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker("browser")
        if item.path.name == "test_ops.py" and "torchvision" in item.name:  # every torchvision model
            item.add_marker("slow")


@pytest.fixture
def meta_input():
    def make(size: int, batch: int = 1):
        return torch.empty(batch, 3, size, size, device="meta")

    return make


class SyntheticSweep:
    """A database with known figures, as a sweep would store it: the report, recommend and predict
    tests read their oracles from the laws here (``per_image``, ``memory``)."""

    EVIL = "<script>alert(1)</script>"
    MODELS = [  # name, params, G-MACs, top-1
        ("alexnet", 61.1e6, 0.714, 56.5), ("vgg16", 138.4e6, 15.47, 71.6), ("resnet18", 11.7e6, 1.81, 69.8),
        ("resnet50", 25.6e6, 4.09, 76.1), ("mobilenet_v2", 3.5e6, 0.30, 71.9), (EVIL, 5e6, 1.0, 60.0),
        ("dollar$x$model", 8e6, 2.0, 65.0),
    ]
    BATCHES = (1, 2, 4, 8, 16, 32)
    PEAK = 2e11

    @staticmethod
    def per_image(gmacs: float, b: int, peak: float = PEAK) -> float:
        """Seconds per image: linear in operations at one batch size, faster per image in larger batches."""
        return 0.002 + gmacs * 1e9 * 2 / peak * 1.5 / (1 + 0.1 * b)

    @staticmethod
    def memory(params: float, gmacs: float, b: int) -> float:
        """Peak bytes: flat up to batch 4, then linear."""
        return 7.5e8 + 4 * params + 3e6 * gmacs * max(0, b - 4)

    # other setups of some models: (backend, precision, latency over eager fp32's, top-1 agreement);
    # compile bf16 computes wrong results (agreement below 90%), int8 is not judged by agreement
    SETUPS = [("onnxruntime", "fp32", 0.4, 1.0), ("onnxruntime", "int8", 0.25, 0.5), ("compile", "bf16", 3.0, 0.5)]
    SETUP_MODELS = ("resnet18", "mobilenet_v2")

    @staticmethod
    def slower(gmacs: float) -> float:
        """How much longer a model takes on the second machine ("edge"): not one number, it grows with operations."""
        return 1.5 + 0.5 * gmacs

    def make_db(self, path, energy: bool = False, peak: float = PEAK, setups: bool = False, edge: bool = False):
        from dnnbench.store import Store

        with Store(path) as store:
            run = store.start_run(["run"], {"setups": [{"machine": "m1"}]}, {"peak_flops": peak, "cpu_model": "test CPU"})
            for name, params, gmacs, top1 in self.MODELS:
                store.put_model({"name": name, "input_size": 224, "family": "X", "source": "torchvision",
                                 "params": int(params), "macs": int(gmacs * 1e9), "flops": int(2 * gmacs * 1e9),
                                 "file_size": int(4 * params), "top1": top1, "top5": top1 + 15,
                                 "accuracy_source": "test"})
                for b in self.BATCHES:
                    store.put_cell(run, self._cell(name, params, gmacs, b, energy, peak))
                    if edge and name != self.EVIL:
                        cell = self._cell(name, params, gmacs, b, energy, peak)
                        latency = cell["latency_median_s"] * self.slower(gmacs)
                        store.put_cell(run, {**cell, "machine": "edge", "threads": 4, "latency_median_s": latency,
                                             "latency_ci_low_s": latency * 0.99, "latency_ci_high_s": latency * 1.01,
                                             "images_per_s": b / latency, "time_per_image_s": latency / b,
                                             "mem_peak_bytes": cell["mem_peak_bytes"] * 0.8})
                    if setups and name in self.SETUP_MODELS:
                        for backend, precision, factor, agreement in self.SETUPS:
                            store.put_cell(run, self._other(self._cell(name, params, gmacs, b, energy, peak),
                                                            backend, precision, factor, agreement))
                        # converted but not runnable here (Core ML off macOS), and a model that does not convert
                        store.put_cell(run, {**self._key(name, b), "backend": "coreml", "status": "untimed",
                                             "error": self.UNTIMED, "artifact_bytes": int(2 * params),
                                             "cold_prepare_s": 3.0})
                        if name == "mobilenet_v2":
                            store.put_cell(run, {**self._key(name, b), "backend": "litert", "precision": "int8",
                                                 "status": "error", "error": self.NOT_CONVERTED})
            store.put_cell(run, {"model": "resnet50", "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager",
                                 "precision": "fp32", "threads": 2, "batch_size": 64, "status": "oom",
                                 "error": "resident set above --max-memory"})
        return path

    UNTIMED = "Core ML runs models on macOS only: converted here"
    NOT_CONVERTED = "preparing the backend failed: the model does not convert for litert: torch.export cannot trace it"

    @staticmethod
    def _key(name: str, b: int) -> dict:
        return {"model": name, "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager",
                "precision": "fp32", "threads": 2, "batch_size": b}

    @staticmethod
    def _other(cell: dict, backend: str, precision: str, factor: float, agreement: float) -> dict:
        latency = cell["latency_median_s"] * factor
        shrink = 4 if precision == "int8" else 1  # int8 weights: a quarter of the bytes
        return {**cell, "backend": backend, "precision": precision, "latency_median_s": latency,
                "artifact_bytes": cell["artifact_bytes"] // shrink, "restart_cold_s": 0.3, "restart_warm_s": 0.2,
                "latency_ci_low_s": latency * 0.99, "latency_ci_high_s": latency * 1.01,
                "images_per_s": cell["batch_size"] / latency, "time_per_image_s": latency / cell["batch_size"],
                "cold_prepare_s": 2.0, "max_rel_error": 1e-6 if agreement == 1.0 else 0.3, "top1_agreement": agreement}

    def _cell(self, name, params, gmacs, b, energy, peak) -> dict:
        per_image = self.per_image(gmacs, b, peak)
        latency = per_image * b
        cell = {"model": name, "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager", "precision": "fp32",
                "threads": 2, "batch_size": b, "status": "ok", "latency_median_s": latency,
                "latency_ci_low_s": latency * 0.99, "latency_ci_high_s": latency * 1.01, "ci_rel": 0.01,
                "samples": 20, "images_per_s": b / latency, "time_per_image_s": per_image,
                "mem_baseline_bytes": 7e8, "mem_loaded_bytes": 7e8 + 4 * params,
                "mem_peak_bytes": self.memory(params, gmacs, b), "cold_build_s": 0.1,
                "cold_load_s": 0.05, "cold_first_s": 0.2, "stop_reason": "converged",
                "artifact_bytes": int(4 * params), "restart_cold_s": 0.4, "restart_warm_s": 0.35,
                "energy_reason": None if energy else "no RAPL energy counter: test"}
        if energy:
            cell.update(energy_per_image_j=per_image * 40, power_w=40 + gmacs, energy_source="rapl")
        return cell


@pytest.fixture(scope="session")
def synthetic() -> SyntheticSweep:
    return SyntheticSweep()


@pytest.fixture(autouse=True)
def _the_machine_to_itself_when_asked(request):
    """With the suite spread over processes (`pytest -n 2`), an ``alone`` test runs while no other
    test does, and the others wait meanwhile: a readers-writer lock on a file the processes of one
    run share. The turnstile lets a waiting ``alone`` test in before the next of the others."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:  # one process: nothing else runs beside a test
        yield
        return
    base = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"dnnbench-tests-{run}")
    alone = request.node.get_closest_marker("alone") is not None
    with open(base + ".turnstile", "a") as turnstile, open(base + ".machine", "a") as machine:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(machine, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(machine, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(turnstile, fcntl.LOCK_UN)
