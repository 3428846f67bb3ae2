"""The GX gate blocks publishing of bad data; the published marts stay exactly as they were."""

from __future__ import annotations

import json

import psycopg
import pytest
from helpers import table_fingerprint

from civic_warehouse import pipeline, quality
from civic_warehouse.catalog import get_source

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def published(warehouse_url, simulator):
    """Two days extracted from the simulator, built, validated and published."""
    from conftest import reset_warehouse

    reset_warehouse(warehouse_url)
    source = get_source("calls_for_service")
    pipeline.extract(
        source.name, pipeline.query_for_run(source, None, None, "2026-04-06", "2026-04-08")
    )
    pipeline.transform_candidate()
    pipeline.audit()
    pipeline.publish()
    return warehouse_url


def test_good_data_passes_and_results_are_recorded(published):
    with psycopg.connect(published) as conn:
        rows = conn.execute(
            "select count(*), bool_and(success) from quality.validation_results where suite = 'fct_calls_for_service'"
        ).fetchone()
    assert rows[0] >= 10 and rows[1] is True


def test_out_of_city_coordinates_block_publishing(published):
    before = table_fingerprint(published, "open", "fct_calls_for_service", "event_number")
    with psycopg.connect(published) as conn:
        # A feed that switched projection: coordinates are now state-plane feet, far outside Dayton.
        conn.execute(
            """
            update raw.calls_for_service
            set record = record || jsonb_build_object('latitude', '1834520.5', 'longitude', '592300.2')
            where record_key in (select record_key from raw.calls_for_service order by record_key limit 200)
            """
        )
    pipeline.transform_candidate()

    with pytest.raises(quality.QualityGateFailed) as raised:
        pipeline.audit()

    message = str(raised.value)
    assert "suite fct_calls_for_service" in message
    assert "expect_column_values_to_be_between on fct_calls_for_service.latitude" in message
    assert "1834520.5" in message  # sample failing values
    assert "Data Docs:" in message and raised.value.report.data_docs.exists()
    assert table_fingerprint(published, "open", "fct_calls_for_service", "event_number") == before
    with psycopg.connect(published) as conn:
        failed = conn.execute(
            """
            select suite, column_name, severity, sample_failing_values
            from quality.validation_results
            where not success and run_id = %s order by suite, column_name
            """,
            [raised.value.report.run_id],
        ).fetchall()
    # Caught twice: in the mart about to be published and in the source feed it came from.
    assert [(suite, c, s) for suite, c, s, _ in failed] == [
        ("fct_calls_for_service", "latitude", "critical"),
        ("fct_calls_for_service", "longitude", "critical"),
        ("stg_cad__calls_for_service", "latitude", "critical"),
        ("stg_cad__calls_for_service", "longitude", "critical"),
    ]
    assert "1834520.5" in json.dumps(failed[0][3])


def test_warnings_are_recorded_but_do_not_block(published):
    with psycopg.connect(published) as conn:
        conn.execute(
            """
            update raw.calls_for_service
            set record = record - 'latitude' - 'longitude' || jsonb_build_object('call_type_code', 'NEWCODE')
            where record_key in (select record_key from raw.calls_for_service order by record_key desc limit 3)
            """
        )
        # Undo the previous test's corruption so only the warning-level problem remains.
        conn.execute(
            """
            update raw.calls_for_service set record = record - 'latitude' - 'longitude'
            where (record ->> 'latitude')::numeric > 1000
            """
        )
    pipeline.transform_candidate()
    report = quality.gate()
    assert report.passed
    assert [(w.column, w.severity) for w in report.warnings] == [("call_category", "warning")]


def test_a_candidate_that_collapsed_against_the_published_version_is_blocked(published):
    from civic_warehouse import publish

    publish.publish(published)  # the full two days are now the published version
    with psycopg.connect(published) as conn:
        conn.execute(
            """
            update raw.calls_for_service set deleted_at = now()
            where record_key in (select record_key from raw.calls_for_service order by record_key
                                 limit (select count(*) * 2 / 3 from raw.calls_for_service))
            """
        )
    pipeline.transform_candidate()
    report = quality.validate()
    failed = [(o.expectation, o.severity) for o in report.critical_failures]
    assert failed == [("expect_table_row_count_to_be_between", "critical")]
