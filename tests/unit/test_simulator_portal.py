"""The simulator's open-data portal write side: CKAN actions and the SODA producer upsert, over HTTP."""

from __future__ import annotations

import pytest
import requests

from city_simulator.server import SimulatorServer

TOKEN = "ckan-test-token"
KEY = ("key-id", "key-secret")
ACTION = "/api/3/action"


@pytest.fixture
def sim():
    with SimulatorServer(port=0, ckan_token=TOKEN, socrata_credentials=KEY) as server:
        yield server


def call(sim, action: str, token: str | None = TOKEN, **data) -> requests.Response:
    headers = {"Authorization": token} if token else {}
    return requests.post(f"{sim.url}{ACTION}/{action}", json=data, headers=headers, timeout=10)


def upsert(sim, rows, auth=KEY, dataset: str = "crsh-open") -> requests.Response:
    return requests.post(f"{sim.url}/resource/{dataset}.json", json=rows, auth=auth, timeout=10)


def make_table(sim) -> str:
    package = call(sim, "package_create", name="kpis", title="KPIs").json()["result"]
    created = call(
        sim,
        "datastore_create",
        resource={"package_id": package["id"], "name": "fct_kpi"},
        fields=[{"id": "metric", "type": "text"}, {"id": "day", "type": "date"},
                {"id": "value", "type": "numeric"}],
        primary_key=["metric", "day"],
    )  # fmt: skip
    assert created.status_code == 200, created.text
    return created.json()["result"]["resource_id"]


def search(sim, resource_id: str) -> list[dict]:
    answer = requests.get(
        f"{sim.url}{ACTION}/datastore_search", params={"resource_id": resource_id}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]["records"]


def test_ckan_upsert_updates_by_primary_key_and_delete_filters_on_it(sim):
    resource_id = make_table(sim)
    rows = [{"metric": "m", "day": f"2026-07-0{d}", "value": d} for d in (1, 2, 3)]
    assert call(sim, "datastore_upsert", resource_id=resource_id, records=rows,
                method="upsert").status_code == 200  # fmt: skip
    changed = [{"metric": "m", "day": "2026-07-02", "value": 20}]
    call(sim, "datastore_upsert", resource_id=resource_id, records=changed, method="upsert")
    deleted = call(sim, "datastore_delete", resource_id=resource_id,
                   filters={"metric": "m", "day": ["2026-07-01", "2026-07-09"]})  # fmt: skip

    assert deleted.status_code == 200, deleted.text
    assert search(sim, resource_id) == [
        {"_id": 2, "metric": "m", "day": "2026-07-02", "value": 20},
        {"_id": 3, "metric": "m", "day": "2026-07-03", "value": 3},
    ]
    package = requests.get(f"{sim.url}{ACTION}/package_show", params={"id": "kpis"}, timeout=10)
    assert [r["id"] for r in package.json()["result"]["resources"]] == [resource_id]


def test_ckan_refuses_a_wrong_token_a_record_without_its_key_and_unknown_fields(sim):
    resource_id = make_table(sim)
    wrong = call(sim, "datastore_upsert", token="nope", resource_id=resource_id, records=[])
    keyless = call(sim, "datastore_upsert", resource_id=resource_id, records=[{"metric": "m"}])
    unknown = call(sim, "datastore_upsert", resource_id=resource_id,
                   records=[{"metric": "m", "day": "2026-07-01", "colour": "red"}])  # fmt: skip
    missing = call(sim, "package_show", id="no-such-dataset")

    assert wrong.status_code == 403
    assert wrong.json()["error"]["__type"] == "Authorization Error"
    assert wrong.json()["success"] is False
    assert keyless.status_code == 409 and "needed as key" in keyless.json()["error"]["records"][0]
    assert unknown.status_code == 409 and "colour" in unknown.json()["error"]["records"][0]
    assert missing.status_code == 404 and missing.json()["error"]["__type"] == "Not Found Error"
    assert search(sim, resource_id) == []


def test_soda_upsert_creates_updates_and_deletes_by_row_identifier(sim):
    first = upsert(sim, [{"crash_id": "C1", "injuries": 1}, {"crash_id": "C2", "injuries": 0}])
    second = upsert(
        sim,
        [{"crash_id": "C1", "injuries": 2}, {"crash_id": "C2", ":deleted": True},
         {"crash_id": "C3", "injuries": None}, {"injuries": 5}],
    )  # fmt: skip

    assert first.json()["Rows Created"] == 2
    counts = second.json()
    assert (counts["Rows Created"], counts["Rows Updated"], counts["Rows Deleted"]) == (1, 1, 1)
    assert counts["Errors"] == 1  # the row without its identifier
    served = requests.get(f"{sim.url}/resource/crsh-open.json", timeout=10).json()
    assert served == [{"crash_id": "C1", "injuries": "2"}, {"crash_id": "C3"}]


def test_soda_refuses_wrong_credentials_and_unknown_datasets(sim):
    wrong = upsert(sim, [{"crash_id": "C1"}], auth=("key-id", "wrong"))
    anonymous = requests.post(f"{sim.url}/resource/crsh-open.json", json=[], timeout=10)
    unknown = upsert(sim, [{"crash_id": "C1"}], dataset="zzzz-9999")

    assert wrong.status_code == 401 and anonymous.status_code == 401
    assert wrong.json()["code"] == "authentication_required"
    assert unknown.status_code == 404 and unknown.json()["code"] == "dataset.missing"
    assert requests.get(f"{sim.url}/resource/crsh-open.json", timeout=10).json() == []


def test_write_faults_fail_writes_after_some_were_accepted(sim):
    sim.soda_portal.fail_writes.arm(after=1, count=1, status=500)
    sim.faults.append((503, {"Retry-After": "0"}, b'{"message": "busy"}'))

    canned = upsert(sim, [{"crash_id": "C0"}])
    accepted = upsert(sim, [{"crash_id": "C1"}])
    failed = upsert(sim, [{"crash_id": "C2"}])
    again = upsert(sim, [{"crash_id": "C2"}])

    assert [r.status_code for r in (canned, accepted, failed, again)] == [503, 200, 500, 200]
    served = requests.get(f"{sim.url}/resource/crsh-open.json", timeout=10).json()
    assert [r["crash_id"] for r in served] == ["C1", "C2"]
