"""`run --cluster`: one sweep across the nodes of a real local Ray cluster (two worker nodes on this
machine, told apart by their `dnnbench-machine` labels), one node lost mid-sweep, then resumed."""

import os
import sqlite3
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from dnnbench import api  # noqa: E402
from dnnbench.cluster import LABEL, Node, check  # noqa: E402
from dnnbench.errors import UserError  # noqa: E402

TINY = f"{Path(__file__).parent / 'data' / 'faulty_models.py'}:tiny"
MODELS = ["squeezenet1_1", "mobilenet_v3_small", TINY]
BATCHES = [1, 2, 4]
RUN = ["--input-size", "64", "--batch-sizes", "1,2,4", "--quick", "--rounds", "1", "--max-seconds-per-cell", "0.4", "--threads", "1",
       "--on-busy", "measure", "--machines", "lab1,lab2"]


@pytest.fixture(scope="module")
def cluster():
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    labs = {name: nodes.add_node(num_cpus=1, labels={LABEL: name}) for name in ("lab1", "lab2")}
    nodes.wait_for_nodes()
    yield nodes, labs
    if ray.is_initialized():
        ray.shutdown()
    nodes.shutdown()


def cells(db):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM cells")]
        except sqlite3.OperationalError:  # the sweep created the file and has not made its tables yet
            return []


from clitool import start as dnnbench  # noqa: E402


def test_a_node_lost_mid_sweep_loses_only_its_cell_in_progress_and_resumes(cluster, tmp_path):
    nodes, labs = cluster
    db = tmp_path / "fleet.db"
    sweep = dnnbench("run", *MODELS, *RUN, "--cluster", nodes.address, "--db", str(db))
    # the nodes share this machine's measuring lock, so they take turns: lose lab2 once it stored a cell
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and sweep.poll() is None:
        if db.exists() and any(c["machine"] == "lab2" for c in cells(db)):
            break
        time.sleep(0.05)
    else:
        out = sweep.communicate()[0] if sweep.poll() is not None else ""
        pytest.fail(f"lab2 stored no cell: {out[-2000:]}")
    nodes.remove_node(labs["lab2"])
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, out
    assert "lab2: lost" in out and "resumes it" in out, out
    before = {(c["machine"], c["model"], c["batch_size"]): c for c in cells(db)}
    on_lab2 = [k for k in before if k[0] == "lab2"]
    assert 1 <= len(on_lab2) < len(MODELS) * len(BATCHES), out  # lost mid-sweep
    assert sum(k[0] == "lab1" for k in before) == len(MODELS) * len(BATCHES), out  # lab1 went on

    labs["lab2"] = nodes.add_node(num_cpus=1, labels={LABEL: "lab2"})
    nodes.wait_for_nodes()
    again = dnnbench("run", *MODELS, *RUN, "--cluster", nodes.address, "--db", str(db))
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    after = cells(db)
    keys = [(c["machine"], c["model"], c["batch_size"]) for c in after]
    assert len(keys) == len(set(keys)) == 2 * len(MODELS) * len(BATCHES)  # every cell of both, exactly once
    assert all(c["status"] == "ok" and c["rounds"] == 1 for c in after), out
    assert {c["machine"] for c in after} == {"lab1", "lab2"}
    for c in after:  # nothing taken before the loss was measured again or lost
        key = (c["machine"], c["model"], c["batch_size"])
        if key in before:
            assert c["measured_at"] == before[key]["measured_at"] and c["latency_median_s"] == before[key]["latency_median_s"]
    assert "lab1:" in out and "0 cells measured now" in out  # lab1 had nothing left to do

    runs = api.open(db).runs
    assert len(runs) == 4  # a run per machine per sweep
    assert sum(r["outcome"].startswith("stopped: lost") for r in runs) == 1  # lab2's first, ended by the driver
    with sqlite3.connect(db) as con:
        names = {m for (m,) in con.execute("SELECT machine FROM machines")}
    assert {"lab1", "lab2"} <= names


def test_machines_not_in_the_cluster_and_a_missing_address_are_said(cluster, tmp_path):
    nodes, _ = cluster
    with pytest.raises(UserError, match="nope not in the cluster"):
        api.run("squeezenet1_1", batch_sizes=[1], quick=True, db=tmp_path / "x.db", cluster=nodes.address,
                machines=["nope"])
    with pytest.raises(UserError, match="give the cluster's address"):
        api.run("squeezenet1_1", batch_sizes=[1], quick=True, db=tmp_path / "x.db", machines=["lab1"])
    with pytest.raises(UserError, match="leave out --machine"):
        api.run("squeezenet1_1", batch_sizes=[1], quick=True, db=tmp_path / "x.db", cluster=nodes.address,
                machine="mine")


def test_a_node_with_another_dnnbench_or_without_its_libraries_is_refused_before_measuring():
    from dnnbench import __version__

    ok = Node("a", "10.0.0.1", machine="lab1", versions={"dnnbench": __version__})
    old = Node("b", "10.0.0.2", machine="lab2", versions={"dnnbench": "0.0.1"})
    bare = Node("c", "10.0.0.3", machine="lab3", error="cannot run dnnbench there (ModuleNotFoundError: No "
                                                        "module named 'dnnbench')")
    with pytest.raises(UserError, match=r"node 10.0.0.2 \(lab2\): has dnnbench 0.0.1.*node 10.0.0.3 \(lab3\)"):
        check([ok, old, bare], print)
    said = []
    twin = Node("d", "10.0.0.4", machine="lab1", versions={"dnnbench": __version__})
    assert check([ok, twin], said.append) == [ok]
    assert "same machine" in said[0] and LABEL in said[0]


def test_the_probe_reads_the_node_as_a_local_sweep_would(cluster):
    nodes, _ = cluster
    from dnnbench.cluster import connect, nodes as probe_nodes
    from dnnbench.setup import machine_id

    connect(nodes.address)
    found = {n.machine: n for n in probe_nodes(["lab1", "lab2"])}
    assert set(found) == {"lab1", "lab2"}
    from dnnbench.measure.device import machine_environment
    from dnnbench.setup import fingerprint

    here = machine_environment("cpu")
    for n in found.values():
        assert n.error is None and n.fingerprint == fingerprint(here) and n.host == os.uname().nodename
        assert n.versions["torch"].split("+")[0] == __import__("torch").__version__.split("+")[0]
    assert machine_id(here)  # the name a node without a label would take
