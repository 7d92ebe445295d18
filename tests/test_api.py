"""dnnbench as a library: the public names, one set of defaults with the command line, the same
answers as the command line, temporary databases, progress, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

import dnnbench
from dnnbench import api
from dnnbench.errors import UserError

TINY = f"{Path(__file__).parent / 'data' / 'faulty_models.py'}:tiny"


from clitool import cli  # noqa: E402


def test_import_is_light_and_every_public_name_is_documented():
    code = ("import sys, dnnbench; print(sorted(dnnbench.__all__) == sorted(n for n in dir(dnnbench) "
            "if not n.startswith('_'))); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]  # torch loads when a model does, not on import
    for name in dnnbench.__all__:
        thing = getattr(dnnbench, name)
        assert thing.__doc__ and len(thing.__doc__) > 40, name
    assert callable(dnnbench.run) and "max_seconds_per_cell" in dnnbench.run.__doc__
    with pytest.raises(AttributeError):
        dnnbench.nothing_here  # noqa: B018


def test_the_cli_and_the_api_run_the_same_sweep_with_the_same_defaults(tmp_path):
    from dnnbench.measure.device import default_threads

    out = cli("run", TINY, "--input-size", "32", "--batch-sizes", "1,2", "--quick", "--on-busy", "measure",
              "--db", tmp_path / "cli.db")
    assert out.returncode == 0, out.stderr
    res = dnnbench.run(TINY, input_size=32, batch_sizes=[1, 2], quick=True, on_busy="measure", db=tmp_path / "api.db",
                       progress=False)
    by_cli = dnnbench.open(tmp_path / "cli.db")

    def config(results):
        [run] = results.runs
        return {k: v for k, v in run["config"].items() if k != "order_seed"}

    assert config(res) == config(by_cli)
    assert config(res)["setups"] == [dict(dnnbench.Setup(threads=default_threads()).to_dict(),
                                          machine=res.setups[0].machine)]
    assert (config(res)["target_ci"], config(res)["max_seconds_per_cell"], config(res)["rounds"]) == (0.05, 3.0, 2)
    key = ["model", "input_size", "machine", "device", "backend", "precision", "threads", "layout", "batch_size",
           "status"]
    rows = lambda r: sorted(tuple(c[k] for k in key) for c in r.cells)  # noqa: E731
    assert rows(res) == rows(by_cli) and len(rows(res)) == 2
    assert [c["status"] for c in res.last_run.cells] == ["ok", "ok"] and res.last_run.measured == 4  # 2 cells x 2 rounds
    # the table the command prints is the one the API returns
    assert str(res.last_run).splitlines()[0].split() == out.stdout.splitlines()[0].split()
    frame = res.cells.to_pandas()
    assert list(frame.columns[:5]) == ["model", "device", "backend", "precision", "batch_size"]
    assert frame["latency_median_s"].gt(0).all()
    # resumable: a second call measures nothing and takes both cells from the file
    again = dnnbench.run(TINY, input_size=32, batch_sizes=[1, 2], quick=True, on_busy="measure",
                         db=tmp_path / "api.db", progress=False)
    assert again.last_run.measured == 0 and again.last_run.already == 2


def test_a_run_without_a_database_measures_into_a_temporary_one_and_says_nothing_when_asked(tmp_path, capfd):
    res = dnnbench.run(TINY, input_size=32, batch_sizes=[1], quick=True, max_seconds_per_cell=0.2,
                       on_busy="measure", progress=False)
    err = capfd.readouterr().err
    assert "to measure" not in err and "[1/1]" not in err  # no plan line, no bar, no line per cell
    assert res.path.exists() and len(res.cells) == 1
    res.close()
    assert not res.path.exists()
    with pytest.raises(UserError, match="closed"):
        res.cells


def test_an_interrupted_run_keeps_its_temporary_database_and_says_where(monkeypatch):
    from dnnbench.runner import sweep

    def interrupted(self, entries):
        self.store.start_run([], {}, {})
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep.Sweep, "run", interrupted)
    monkeypatch.setattr(api, "_early_launcher", lambda threads: None)
    with pytest.raises(KeyboardInterrupt) as stopped:
        dnnbench.run(TINY, batch_sizes=[1], quick=True, progress=False)
    path = str(stopped.value).split("kept in ")[1].split(":")[0]
    assert Path(path).exists() and "dnnbench.open(" in str(stopped.value)
    assert len(dnnbench.open(path).runs) == 1


def test_recommend_predict_and_export_answer_as_the_commands_do(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db", setups=True)
    res = dnnbench.open(db)
    answer = res.recommend(max_memory="1GB", max_latency="30ms")
    out = cli("recommend", "--db", db, "--max-memory", "1GB", "--max-latency", "30ms", "--json")
    assert answer.to_dicts() == json.loads(out.stdout)
    assert str(answer) + "\n" == cli("recommend", "--db", db, "--max-memory", "1GB", "--max-latency", "30ms").stdout
    assert answer.best == answer.passing[0] and all(r["passes"] for r in answer.passing)
    # limits as numbers are in bytes and seconds
    assert res.recommend(max_memory=10**9, max_latency=0.030).to_dicts() == answer.to_dicts()
    only = res.recommend(max_memory="1GB", max_latency="30ms", backend="onnxruntime")
    assert {r["backend"] for r in only} == {"onnxruntime"}
    with pytest.raises(UserError, match=r"backend tensorrt: not measured in .* \(measured: compile, coreml, eager, litert, onnxruntime\)"):
        res.recommend(max_memory="1GB", max_latency="30ms", backend="tensorrt")
    predicted = res.predict("resnet34", batch_size=16, method="features", progress=False)
    assert str(predicted) + "\n" == cli("predict", "resnet34", "--db", db, "--method", "features").stdout
    assert predicted.to_dicts() == json.loads(cli("predict", "resnet34", "--db", db, "--method", "features",
                                                  "--json").stdout)
    assert res.export("json") == cli("export", "--db", db, "--format", "json").stdout
    with pytest.raises(UserError, match="would destroy it"):
        res.export("csv", out=db)  # never over the file it reads
    assert Path(db).stat().st_size > 0 and len(res.cells) == len(json.loads(res.export("json")))


@pytest.mark.parametrize("call, message", [
    (lambda: dnnbench.run(TINY, setup=dnnbench.Setup(), backend="onnxruntime"), "not both"),
    (lambda: dnnbench.run(TINY, setup="eager"), "dnnbench.Setup"),
    (lambda: dnnbench.run(TINY, batch_sizes=[0, 2]), "batch sizes"),
    (lambda: dnnbench.run(TINY, target_ci=2), "target_ci"),
    (lambda: dnnbench.run(TINY, max_memory="4"), "max_memory"),
    (lambda: dnnbench.run(TINY, timeout=-1), "timeout_s"),
    (lambda: dnnbench.run(TINY, on_busy="panic"), "on_busy"),
    (lambda: dnnbench.run(TINY, backend="tensorrt"), "unknown backend 'tensorrt'"),
    (lambda: dnnbench.run([]), "no models given"),
    (lambda: dnnbench.Setup(threads=0), "threads"),
    (lambda: dnnbench.inspect("resnet18", errors="ignore"), "errors"),
    (lambda: dnnbench.inspect("resnet5"), "did you mean"),
    (lambda: dnnbench.open("/nonexistent/x.db"), "x.db"),
])
def test_bad_input_is_a_user_error_naming_the_fix(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_to_pandas_without_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    rows = dnnbench.models(zoo="mobile")
    with pytest.raises(UserError, match=r"pip install 'dnnbench\[pandas\]'"):
        rows.to_pandas()
    assert rows.to_dicts()[0] == {"name": rows[0].name, "family": rows[0].family, "source": rows[0].source,
                                  "input_size": rows[0].input_size}


def test_inspect_can_skip_a_model_that_fails_and_say_why():
    found = dnnbench.inspect([TINY, f"{TINY.rsplit(':', 1)[0]}:fails_to_build"], input_size=32, errors="skip",
                             progress=False)
    assert [f.name for f in found] == [TINY] and len(found.failures) == 1 and "fails_to_build" in found.failures[0]
    assert "MACs: multiply-accumulates" in str(found)


def test_progress_is_a_notebook_widget_in_jupyter(monkeypatch):
    from dnnbench import progressbar

    assert not progressbar.in_notebook()
    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    assert progressbar.in_notebook()
    shown = progressbar.bar(total=3, desc="run", unit="cell")
    try:
        from tqdm.notebook import IProgress  # noqa: F401 - ipywidgets present: the widget
        widget = IProgress is not None
    except ImportError:
        widget = False
    assert type(shown).__module__ == ("tqdm.notebook" if widget else "tqdm.std")
    shown.close()
    assert progressbar.bar(total=3, desc="run", unit="cell", enabled=False).disable


def test_nothing_imports_ray_without_a_cluster():
    code = ("import sys, dnnbench.api, dnnbench.cli, dnnbench.cluster, dnnbench.cluster.node, dnnbench.merging, "
            "dnnbench.runner.sweep, dnnbench.report.build; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_cluster_without_ray_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(dnnbench.UserError, match=r"pip install 'dnnbench\[cluster\]'"):
        dnnbench.run(TINY, batch_sizes=[1], quick=True, db=tmp_path / "c.db", cluster="auto")


def test_a_cluster_address_where_nothing_listens_is_refused_at_once(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(dnnbench.UserError, match="nothing answers there"):
        dnnbench.run(TINY, batch_sizes=[1], quick=True, db=tmp_path / "c.db", cluster="127.0.0.1:1")
