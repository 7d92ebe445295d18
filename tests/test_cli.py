"""The command line as a user runs it: a real process, its output, its exit status."""

import json
import subprocess
import sys

import pytest

from dnnbench.cli import main

KEYS = {"name", "family", "source", "params", "macs", "flops", "file_size", "input_size", "top1", "top5",
        "accuracy_source", "accuracy_density", "measured_top1", "measured_top5", "measured_source", "paper_top1",
        "paper_source"}


from clitool import cli as run  # noqa: E402


def test_inspect_canziani2016_json():
    result = run("inspect", "--zoo", "canziani2016", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 14
    assert all(set(r) == KEYS for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["vgg16"]["params"] == 138_357_544
    assert by_name["vgg16"]["flops"] == 2 * by_name["vgg16"]["macs"]
    assert by_name["timm/inception_v4"]["input_size"] == 299
    assert by_name["resnet50"]["accuracy_source"].startswith("torchvision")
    assert by_name["enet"]["top1"] is None and by_name["enet"]["accuracy_source"] is None
    # VGG-19 is the most expensive model of the paper, ENet the smallest
    assert max(rows, key=lambda r: r["macs"])["name"] == "vgg19"
    assert min(rows, key=lambda r: r["params"])["name"] == "enet"


def test_inspect_table_has_units_and_sources(capsys):
    assert main(["inspect", "resnet18", "vgg-16"]) == 0
    out = capsys.readouterr().out
    assert "params (M)" in out and "MACs (G)" in out and "top-1 (%)" in out
    assert "11.69" in out and "1.814" in out and "vgg16" in out
    assert "[1] torchvision" in out


def test_models_json():
    result = run("models", "--zoo", "bianco2018", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= {"timm/nasnetalarge", "pretrainedmodels/polynet", "vgg19_bn"}
    assert all(set(r) == {"name", "family", "source", "input_size"} for r in rows)


def test_models_lists_the_whole_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "timm/vit_base_patch16_224" in out and "bn-nin" in out


@pytest.mark.parametrize("args,message", [
    (["inspect", "resnet5"], "unknown model 'resnet5'; did you mean resnet50"),
    (["inspect", "--zoo", "nope"], "unknown zoo 'nope'"),
    (["inspect", "resnet18", "--input-size", "-3"], "expected a positive whole number"),
    (["inspect", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["inspect"], "no models given"),
    (["bogus"], "invalid choice: 'bogus'"),
])
def test_user_errors_are_one_line_with_status_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dnnbench: error: ") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_a_model_that_crashes_is_reported_and_the_others_kept(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from torch import nn\nclass Bad(nn.Module):\n    def forward(self, x):\n"
                    "        raise ValueError('shape mismatch')\ndef bad():\n    return Bad()\n")
    result = run("inspect", "resnet18", f"{path}:bad", "--json")
    assert result.returncode == 1
    assert [r["name"] for r in json.loads(result.stdout)] == ["resnet18"]
    assert "failed to build or run: ValueError: shape mismatch" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def db(tmp_path_factory, synthetic):
    return synthetic.make_db(tmp_path_factory.mktemp("cli") / "c.db")


@pytest.mark.parametrize("args", [
    ["models"], ["inspect", "resnet18"], ["export", "--db", "{db}"],
    ["recommend", "--db", "{db}", "--max-memory", "2GB", "--max-latency", "50ms"],
])
def test_a_reader_that_leaves_early_ends_the_command_quietly(args, db):
    # like `dnnbench models | head -1`: the reader is gone before the command writes its first line
    proc = subprocess.Popen([sys.executable, "-m", "dnnbench", *(a.format(db=db) for a in args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.communicate(timeout=300)[1].decode()
    assert stderr == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, as for a command the closed pipe ended


# Sends the process a real SIGINT while `import torch` runs, as Ctrl-C does; ``swallow`` stands for a
# library that catches the interrupt inside its import and fails later in another way.
INTERRUPT_IMPORT = """
import os, signal, sys

class Left:  # an object the interrupt leaves half made, whose clean-up fails at shutdown
    def __del__(self):
        raise KeyboardInterrupt

class InterruptImport:
    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        sys.modules["left"] = Left()
        try:
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(10**6))  # the handler runs between these instructions
        except KeyboardInterrupt:
            if sys.argv[1] == "swallow":
                raise ImportError("cannot load module more than once per process")
            raise

sys.meta_path.insert(0, InterruptImport())
from dnnbench.cli import main
sys.exit(main(["inspect", "resnet18"]))
"""


@pytest.mark.parametrize("how", ["raise", "swallow"])
def test_ctrl_c_during_imports_is_one_line(how):
    out = subprocess.run([sys.executable, "-c", INTERRUPT_IMPORT, how], capture_output=True, text=True, timeout=300)
    assert out.stderr == "dnnbench: interrupted\n"
    assert out.returncode == 130 and out.stdout == ""
