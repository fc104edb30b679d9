"""A user's task code that exits, raises a BaseException or prints while loading
never takes the tool down: `tasks` lists every other task and marks that one broken with the reason;
`sweep --task` with it is one line, exit 2, nothing written. Ctrl-C still stops the tool.

(``os._exit()`` in a user's code ends the process at once; no Python code can catch it, so it is
documented in :func:`sensitivity.tasks.get_task`, not tested here.)
"""

from __future__ import annotations

import sys
import textwrap
import uuid

import pytest
from typer.testing import CliRunner

from sensitivity.cli import app, terminal
from sensitivity.errors import UserError
from sensitivity.tasks import ENTRY_POINT_GROUP, TASKS, get_task

PLUGIN = textwrap.dedent('''
    import sys
    import torch
    from sensitivity.tasks import TensorData, TensorTask

    class Stop(BaseException):
        pass

    def load(config):
        x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
        y = (x[:, 0] > 0).long()
        return TensorData(x[:30], y[:30], x[30:], y[30:], num_classes=2, description="toy")

    def good(name="fine"):
        return TensorTask(name=name, description="a fine task", defaults={"epochs": 1, "batch_size": 10},
                          load=load, build_model=lambda config, data: torch.nn.Linear(3, 2))

    def sys_exit_text():
        sys.exit("set FAKEPLUG_DATA to your data folder")

    def sys_exit_zero():
        raise SystemExit(0)

    def builtin_exit():
        exit()

    def base_exception():
        raise Stop("the plugin gave up")

    def interrupt():
        raise KeyboardInterrupt

    def noisy():
        print("PLUGIN-NOISE on stdout")
        return good("noisy")

    def shadows_builtin():
        return good("digits-mlp")
''')


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """The module PLUGIN installed as a package whose entry points name each factory."""
    name = f"plug_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(PLUGIN)
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    factories = ("good", "sys_exit_text", "sys_exit_zero", "builtin_exit", "base_exception", "noisy",
                 "shadows_builtin")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n" + "".join(f"{f}-{name} = {name}:{f}\n" for f in factories))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("factory, words", [
    ("sys_exit_text", ["exited", "'set FAKEPLUG_DATA to your data folder'"]),
    ("sys_exit_zero", ["exited", "sys.exit(0)"]),
    ("builtin_exit", ["exited", "sys.exit()"]),
    ("base_exception", ["failed", "Stop: the plugin gave up"]),
])
def test_a_factory_that_exits_is_a_user_error_naming_it(plugin, factory, words):
    with pytest.raises(UserError) as info:
        get_task(f"{plugin}:{factory}")
    text = str(info.value)
    assert "\n" not in text and factory in text
    for w in words:
        assert w in text, text


def test_ctrl_c_in_a_factory_still_stops_the_tool(plugin):
    with pytest.raises(KeyboardInterrupt):
        get_task(f"{plugin}:interrupt")


def test_a_module_that_exits_at_import_is_a_user_error(tmp_path):
    path = tmp_path / "exits_at_import.py"
    path.write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(UserError, match=r"importing .*exits_at_import.py exited \(sys.exit\(3\)\)"):
        get_task(f"{path}:anything")
    with pytest.raises(UserError, match=r"importing .*exits_at_import.py exited"):  # and again: not half-imported
        get_task(f"{path}:anything")


def test_a_task_taking_a_built_in_name_is_refused(plugin):
    with pytest.raises(UserError, match="'digits-mlp' is the name of a built-in task"):
        get_task(f"{plugin}:shadows_builtin")
    assert get_task("digits-mlp") is TASKS["digits-mlp"]


def test_prints_while_loading_go_to_stderr(plugin, capsys):
    task = get_task(f"{plugin}:noisy")
    out, err = capsys.readouterr()
    assert task.name == "noisy"
    assert "PLUGIN-NOISE" not in out and "PLUGIN-NOISE" in err


def test_tasks_lists_every_other_task_and_marks_the_exiting_ones_broken(plugin, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    monkeypatch.setattr(terminal.console, "width", 300)  # made at import: COLUMNS alone comes too late
    result = CliRunner().invoke(app, ["tasks"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    lines = result.stdout.splitlines()
    for builtin in TASKS:
        assert any(builtin in line for line in lines)
    good = next(line for line in lines if f"good-{plugin}" in line)
    assert "broken" not in good
    for factory in ("sys_exit_text", "sys_exit_zero", "builtin_exit", "base_exception", "shadows_builtin"):
        row = next(line for line in lines if f"{factory}-{plugin}" in line)
        assert "broken:" in row, row
    assert "PLUGIN-NOISE" not in result.stdout


@pytest.mark.parametrize("factory", ["sys_exit_text", "sys_exit_zero", "builtin_exit", "base_exception"])
def test_sweep_with_an_exiting_task_is_one_line_exit_2_nothing_written(plugin, tmp_path, factory):
    db = tmp_path / "s.db"
    result = CliRunner().invoke(app, ["sweep", "--task", f"{factory}-{plugin}", "--optimizers", "adam",
                                      "--lr", "1e-2", "--storage", f"sqlite:///{db}"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: entry point"), lines
    assert not db.exists()
