"""The BI role's guard runs wherever BI tools reach the warehouse: compose and `make airflow`."""

from __future__ import annotations

import yaml

from civic_warehouse import settings
from civic_warehouse.cluster.deployment import COMPONENTS, Cluster, standalone_config


def test_make_airflow_runs_the_guard_as_a_component_it_also_stops():
    commands = Cluster(standalone_config())._component_commands()
    assert commands["bi-guard"][1:] == ["-m", "civic_warehouse.access", "guard"]
    assert "bi-guard" in COMPONENTS  # what `make stop` stops


def test_compose_runs_the_same_guard_as_a_service_after_the_grants():
    compose = yaml.safe_load((settings.PROJECT_ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["bi-guard"]
    assert service["command"] == ["python", "-m", "civic_warehouse.access", "guard"]
    assert service["environment"]["WAREHOUSE_URL"].startswith("postgresql://")
    assert service["environment"]["BI_READER_PASSWORD"]
    assert service["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}
    assert service["restart"] == "always"
