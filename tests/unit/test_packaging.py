"""What ships where: the product apart from the simulator, runtime requirements apart from tools."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = {"pytest", "ruff", "selenium", "sqlfluff", "sqlfluff-templater-dbt", "dbt-score"}


def _imported_modules(package: Path) -> set[str]:
    """Top-level names every module of ``package`` imports (relative imports excluded)."""
    names = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_the_product_and_the_simulator_do_not_import_each_other():
    assert "city_simulator" not in _imported_modules(ROOT / "plugins")
    assert "civic_warehouse" not in _imported_modules(ROOT / "simulator")
    assert "city_simulator" not in _imported_modules(ROOT / "dags")


def test_the_image_installs_the_runtime_requirements_only():
    runtime, dev = _pins(ROOT / "requirements.txt"), _pins(ROOT / "requirements-dev.txt")
    assert not DEV_TOOLS & runtime.keys(), "development tools belong in requirements-dev.txt"
    assert dev.keys() >= DEV_TOOLS
    assert not runtime.keys() & dev.keys(), "a package is pinned in both files"
    assert "-r requirements.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()
    installs = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if "pip install" in line
    ]
    assert installs and all("requirements.txt" in line for line in installs)
    assert "requirements-dev" not in (ROOT / "Dockerfile").read_text()


def test_compose_runs_the_simulator_from_its_own_image():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["simulator"]["build"] == "./simulator"
    simulator_image = (ROOT / "simulator" / "Dockerfile").read_text()
    assert "city_simulator" in simulator_image and "apache/airflow" not in simulator_image


def test_installed_packages_are_consistent():
    checked = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
