"""The pipeline's dbt processes: dbt's command line, its exit status, the collector set back, dbt's
log file."""

from __future__ import annotations

import gc
import shutil
import subprocess

from civic_warehouse import dbt_command, settings, transform


def test_the_collector_is_set_for_dbt_and_set_back():
    before = gc.get_threshold()

    with dbt_command.collector_for_dbt():
        inside, frozen = gc.get_threshold(), gc.get_freeze_count()

    assert inside == dbt_command.GC_THRESHOLDS
    assert frozen > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_a_dbt_process_exits_with_dbts_status():
    ran = subprocess.run(
        [*transform.dbt_command(), "--version"], capture_output=True, text=True, check=False
    )
    refused = subprocess.run(
        [*transform.dbt_command(), "no-such-command"],
        cwd=settings.DBT_PROJECT_DIR,
        capture_output=True,
        text=True,
        check=False,
    )

    assert ran.returncode == 0 and "installed:" in ran.stdout
    assert refused.returncode == 2 and "no-such-command" in refused.stderr


def _dbt_deps_log_files(tmp_path, name: str) -> list[str]:
    """The files a dbt command (``deps``: no warehouse needed) leaves in its log directory, run as
    the pipeline runs dbt, in a copy of the project (``deps`` makes a packages folder there)."""
    project = tmp_path / name
    project.mkdir()
    shutil.copy(settings.DBT_PROJECT_DIR / "dbt_project.yml", project)
    environ = transform.dbt_environ("postgresql://nobody@127.0.0.1:5432/nothing")
    subprocess.run(
        [*transform.dbt_command(), "deps"],
        cwd=project,
        env=environ | {"DBT_PROJECT_DIR": str(project), "DBT_LOG_PATH": str(project / "logs")},
        capture_output=True,
        check=True,
    )
    logs = project / "logs"
    return sorted(path.name for path in logs.iterdir()) if logs.exists() else []


def test_dbts_log_file_is_off_unless_the_environment_asks_for_it(tmp_path, monkeypatch):
    monkeypatch.delenv("DBT_LOG_LEVEL_FILE", raising=False)
    assert _dbt_deps_log_files(tmp_path, "default") == []

    monkeypatch.setenv("DBT_LOG_LEVEL_FILE", "debug")
    assert _dbt_deps_log_files(tmp_path, "asked") == ["dbt.log"]
