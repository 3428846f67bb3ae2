"""`lint-private` finds each way of reaching into a dependency's privates, passes code that keeps to
public names, and passes the project itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from civic_warehouse import private_names, settings


def findings(source: str) -> list[str]:
    found = private_names.check_source(textwrap.dedent(source), Path("sample.py"))
    return [f"{f.line}: {f.message}" for f in found]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from pgserver._commands import pg_ctl",
            "1: imports from the private module pgserver._commands",
        ),
        (
            "from cosmos.operators._watcher.base import logger",
            "1: imports from the private module cosmos.operators._watcher.base",
        ),
        ("import dbt.x._y", "1: imports the private module dbt.x._y"),
        ("import dbt.x._y as y", "1: imports the private module dbt.x._y"),
        (
            "from cosmos.constants import _PRODUCER_CMD_FLAGS_XCOM_KEY",
            "1: imports the private name _PRODUCER_CMD_FLAGS_XCOM_KEY from cosmos.constants",
        ),
        (
            "from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor as S\n"
            "S._api_client()",
            "2: uses the private attribute _api_client of "
            "airflow.sdk.execution_time.supervisor.InProcessTestSupervisor",
        ),
        (
            "import cosmos\nflag = cosmos.settings._hidden",
            "2: uses the private attribute _hidden of cosmos.settings",
        ),
        (
            "from cosmos.operators.watcher import DbtProducerWatcherOperator as P\n"
            "P._dbt_runner_callbacks = []",
            "2: sets the private attribute _dbt_runner_callbacks of "
            "cosmos.operators.watcher.DbtProducerWatcherOperator",
        ),
        (
            "import pgserver\ngetattr(pgserver, '_commands')",
            "2: getattr() on the private attribute _commands of pgserver",
        ),
        (
            "from cosmos.operators import watcher\nclass Lean(watcher._ConsumerBase):\n    pass",
            "2: class Lean subclasses the private class cosmos.operators.watcher._ConsumerBase",
        ),
        (
            "from somepkg import _Base\nclass Mine(_Base):\n    pass",
            "1: imports the private name _Base from somepkg",
        ),
        ("task.__class__ = Other", "1: assigns __class__ (swaps an object's class)"),
        (
            "setattr(task, '__class__', Other)",
            "1: assigns __class__ (swaps an object's class)",
        ),
        (
            "from dbt_common.clients.jinja import MacroFuzzEnvironment\n"
            "MacroFuzzEnvironment.compile = fast_compile",
            "2: patches dbt_common.clients.jinja.MacroFuzzEnvironment.compile "
            "(an attribute of a dependency)",
        ),
        (
            "import cosmos.settings\n"
            "def test_x(monkeypatch):\n"
            "    monkeypatch.setattr(cosmos.settings, 'enable_cache', False)",
            "3: setattr() patches cosmos.settings (a dependency)",
        ),
    ],
)
def test_each_private_use_is_reported_with_its_line(source, expected):
    assert expected in findings(source)


def test_a_private_base_class_is_reported_as_subclassed():
    found = findings("from somepkg import _Base\nclass Mine(_Base):\n    pass")
    assert "2: class Mine subclasses the private class somepkg._Base" in found


def test_public_names_and_the_projects_own_privates_pass():
    source = """
        from __future__ import annotations

        import collections
        import sys
        from typing import NamedTuple

        import pgserver
        from cosmos import DbtTaskGroup, ExecutionConfig
        from flask import g

        from civic_warehouse import loader
        from civic_warehouse.transform import _split_vars
        from . import _sibling

        pgserver.pg_ctl(["status"], pgdata="data")
        loader._fetching(None, [])
        frame = sys._getframe()
        point = collections.namedtuple("P", "x")(1)._replace(x=2)
        g.user = "steward"
        version = pgserver.__version__
        task._private_of_an_object_not_imported = 1  # not knowable statically

        class Group(DbtTaskGroup):
            __slots__ = ()
    """
    assert findings(source) == []


def test_a_file_that_does_not_parse_is_reported_not_skipped():
    (found,) = findings("def broken(:\n")
    assert found.startswith("1: cannot parse")


def test_modules_beside_the_checked_files_are_the_projects_own(tmp_path):
    (tmp_path / "helpers.py").write_text("def _local_helper():\n    pass\n")
    (tmp_path / "test_x.py").write_text("from helpers import _local_helper\n")
    (tmp_path / "test_y.py").write_text("from pgserver import _private\n")

    found = private_names.check_paths([tmp_path])

    assert [(f.path.name, f.line) for f in found] == [("test_y.py", 1)]


def test_the_command_fails_on_a_private_use_naming_file_and_line(tmp_path):
    sample = tmp_path / "uses_private.py"
    sample.write_text("import os\nfrom pgserver._commands import pg_ctl\n")
    checked = subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "lint-private", str(sample)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 1
    assert f"{sample}:2:1: imports from the private module pgserver._commands" in checked.stdout


def test_the_project_uses_no_private_name_of_a_dependency():
    """What `make lint` runs: over plugins, simulator, dags, bench, bi and tests."""
    checked = subprocess.run(
        [sys.executable, "-m", "civic_warehouse", "lint-private"],
        cwd=settings.PROJECT_ROOT,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
