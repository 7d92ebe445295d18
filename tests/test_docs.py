"""The documentation stays true: CI runs the README's test command, every command has help."""

import re
from pathlib import Path

import pytest

from dnnbench.cli import COMMANDS, main

ROOT = Path(__file__).parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    assert test_command in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help_and_is_documented(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage: dnnbench " + command)
    assert f"dnnbench {command}" in (ROOT / "README.md").read_text()


def test_the_readme_says_every_exit_status_as_the_command_line_means_it():
    from dnnbench.cli import EXIT_STATUSES

    text = (ROOT / "README.md").read_text()
    for status, (word, meaning) in EXIT_STATUSES.items():
        assert f"| {status} | {word} | {meaning} |" in text


def test_every_line_of_the_readme_python_section_runs(tmp_path, monkeypatch, capsys):
    """The README's Python blocks, in order, in one namespace, as a user pastes them into a notebook:
    real models measured (quick), a real report written."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)\n```", readme, re.S)
    assert len(blocks) >= 2 and "dnnbench.run(" in blocks[0] and "dnnbench.open(" in blocks[1]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "squeezenet1_1" in out and "Limits at batch size 1" in out
    assert namespace["page"].resolve() == tmp_path / "dnnbench-report" / "report.html" and namespace["page"].exists()
    assert len(namespace["cells"]) == 4 and set(namespace["cells"]["status"]) == {"ok"}
    assert {s.backend for s in namespace["again"].setups} == {"eager", "onnxruntime"}
