"""The data-quality feedback channel: residents and users report problems, stewards see and close them.

Reports are kept in ``quality.feedback_reports`` (created when first needed): which dataset (a
source's or a mart's name, as data.json identifies it), what is wrong, who said so, and whether a
steward has closed it and how. ``python -m civic_warehouse feedback add|list|close`` records and
handles them; the stewards' docs site lists the open ones beside the failing expectations.

The public page says, for each dataset behind it, how fresh it is, what the quality gate checked
last, and where to report a problem: ``CW_FEEDBACK_URL`` (an issue tracker or form) or
``CW_FEEDBACK_EMAIL`` when set, otherwise the team that owns the dataset (``departments`` seed).
"""

from __future__ import annotations

import getpass
import html
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from civic_warehouse import catalog, inventory, settings, warehouse

FEEDBACK_URL_ENV = "CW_FEEDBACK_URL"
FEEDBACK_EMAIL_ENV = inventory.FEEDBACK_EMAIL_ENV
REPORTS = sql.Identifier(settings.QUALITY_SCHEMA, "feedback_reports")
MESSAGE_LIMIT = 2000
NAME_LIMIT = 200


class FeedbackError(ValueError):
    """A report cannot be recorded or closed as asked; the message says why."""


@dataclass(frozen=True)
class Report:
    report_id: int
    dataset: str
    message: str
    reporter: str | None
    status: str
    reported_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    resolution: str | None

    def describe(self) -> str:
        who = f" by {self.reporter}" if self.reporter else ""
        line = (
            f"#{self.report_id} [{self.status}] {self.dataset}: {self.message} "
            f"(reported {_stamp(self.reported_at)}{who})"
        )
        if self.status == "closed":
            line += f"; closed {_stamp(self.closed_at)} by {self.closed_by}"
            line += f": {self.resolution}" if self.resolution else ""
        return line


def ensure_table(conn: psycopg.Connection) -> None:
    # Two sessions creating the same table at once: one fails unless the DDL is serialised.
    conn.execute("select pg_advisory_xact_lock(hashtext('civic_warehouse.feedback ddl'))")
    conn.execute(
        sql.SQL("create schema if not exists {}").format(sql.Identifier(settings.QUALITY_SCHEMA))
    )
    conn.execute(
        sql.SQL(
            """
            create table if not exists {reports} (
                report_id bigint generated always as identity primary key,
                dataset text not null,
                message text not null,
                reporter text,
                status text not null default 'open' check (status in ('open', 'closed')),
                reported_at timestamptz not null default now(),
                closed_at timestamptz,
                closed_by text,
                resolution text
            );
            -- the same problem reported again while open is the same report
            create unique index if not exists feedback_reports_open_once
                on {reports} (dataset, md5(message)) where status = 'open'
            """
        ).format(reports=REPORTS)
    )


def add(
    dataset: str,
    message: str,
    reporter: str | None = None,
    url: str | None = None,
    owners: Mapping[str, str] | None = None,
) -> tuple[Report, bool]:
    """Record a report on ``dataset``; returns it and whether it is new (an identical open report
    is not recorded twice)."""
    owners = owners if owners is not None else inventory.dataset_owners()
    if dataset not in owners:
        raise FeedbackError(
            f"no dataset named {dataset!r} in the inventory (known: {', '.join(sorted(owners))})"
        )
    message = _text(message, "message", MESSAGE_LIMIT)
    reporter = _text(reporter, "reporter", NAME_LIMIT) if reporter else None
    with warehouse.connect(url) as conn:
        ensure_table(conn)
        cursor = conn.cursor(row_factory=class_row(Report))
        row = cursor.execute(
            sql.SQL(
                "insert into {} (dataset, message, reporter) values (%s, %s, %s) "
                "on conflict (dataset, md5(message)) where status = 'open' do nothing returning *"
            ).format(REPORTS),
            [dataset, message, reporter],
        ).fetchone()
        if row:
            return row, True
        existing = cursor.execute(
            sql.SQL(
                "select * from {} where dataset = %s and md5(message) = md5(%s) and status = 'open'"
            ).format(REPORTS),
            [dataset, message],
        ).fetchone()
        return existing, False


def reports(
    url: str | None = None, status: str | None = "open", dataset: str | None = None
) -> list[Report]:
    """Reports, oldest first: the open ones by default, ``status=None`` for all."""
    with warehouse.connect(url) as conn:
        ensure_table(conn)
        return (
            conn.cursor(row_factory=class_row(Report))
            .execute(
                sql.SQL(
                    "select * from {} where (%(status)s::text is null or status = %(status)s) "
                    "and (%(dataset)s::text is null or dataset = %(dataset)s) order by report_id"
                ).format(REPORTS),
                {"status": status, "dataset": dataset},
            )
            .fetchall()
        )


def close(
    report_id: int, resolution: str | None = None, by: str | None = None, url: str | None = None
) -> Report:
    """Close an open report, recording who closed it and how it was resolved."""
    resolution = _text(resolution, "resolution", MESSAGE_LIMIT) if resolution else None
    with warehouse.connect(url) as conn:
        ensure_table(conn)
        cursor = conn.cursor(row_factory=class_row(Report))
        row = cursor.execute(
            sql.SQL(
                "update {} set status = 'closed', closed_at = now(), closed_by = %s, "
                "resolution = %s where report_id = %s and status = 'open' returning *"
            ).format(REPORTS),
            [by or getpass.getuser(), resolution, report_id],
        ).fetchone()
        if row:
            return row
        found = cursor.execute(
            sql.SQL("select * from {} where report_id = %s").format(REPORTS), [report_id]
        ).fetchone()
    if found is None:
        raise FeedbackError(f"no report #{report_id}")
    raise FeedbackError(f"report #{report_id} is already closed: {found.describe()}")


def contact(owner: str, topic: str) -> str:
    """How to report a problem with ``topic``, as HTML: the configured link or address, else the
    owning team."""
    link = os.environ.get(FEEDBACK_URL_ENV)
    email = os.environ.get(FEEDBACK_EMAIL_ENV)
    label = html.escape(f"Report a problem with {topic}")
    if link:
        return f'<a class="report" href="{html.escape(link)}">{label}</a>'
    if email:
        subject = quote(f"Problem with {topic}")
        return f'<a class="report" href="mailto:{html.escape(email)}?subject={subject}">{label}</a>'
    department = inventory.departments().get(owner)
    team = owner
    if department and department.owner_team != department.name:
        team = f"{department.owner_team} ({department.name})"
    return f'<span class="report">To report a problem, contact {html.escape(team)}.</span>'


def page_section(url: str | None, topics: Mapping[str, str]) -> str:
    """The public page's section on the data behind it: for each source in ``topics`` (name to
    the page's word for it), its freshness, its last gate check and where to report a problem.

    It reads load times, dates and check counts about the data, never its records.
    """
    sources = catalog.load_catalog()
    with warehouse.connect(url) as conn:
        datasets = inventory.source_datasets(conn, {n: sources[n] for n in topics})
    entries = []
    for dataset in datasets:
        topic = topics[dataset.name]
        if dataset.temporal:
            first, last = (day.isoformat() for day in dataset.temporal)
            fresh = f"Records from {first} to {last}"
        else:
            fresh = "No records yet"
        if dataset.last_loaded:
            fresh += f"; last loaded from the city's system {_stamp(dataset.last_loaded)}"
        if dataset.gate:
            gate = dataset.gate
            checked = (
                f"Quality checks: {gate.passed} of {gate.evaluated} passed, "
                f"{_stamp(gate.validated_at)}"
            )
        else:
            checked = "Quality checks: none recorded yet"
        entries.append(
            f'<div class="dataset" id="dataset-{html.escape(dataset.name)}">'
            f"<h3>{html.escape(topic[:1].upper() + topic[1:])}</h3>"
            f'<p class="freshness">{html.escape(fresh)}.</p>'
            f'<p class="gate">{html.escape(checked)}.</p>'
            f"<p>{contact(dataset.owner, topic)}</p></div>"
        )
    return (
        '<section id="about-the-data"><h2>About the data</h2>'
        "<p>Every figure comes from these city records. The city's data inventory lists every "
        'dataset it holds: <a href="data.json">data.json</a> (DCAT-US 1.1).</p>'
        f"{''.join(entries)}</section>"
    )


def stewards_page(url: str | None = None) -> str:
    """The docs site's page of what needs a steward: open reports beside failing expectations."""
    open_reports = reports(url)
    with warehouse.connect(url) as conn:
        failures = _open_failures(conn)
    report_rows = "".join(
        f"<tr><td>#{r.report_id}</td><td>{html.escape(r.dataset)}</td>"
        f"<td>{html.escape(_stamp(r.reported_at))}</td>"
        f"<td>{html.escape(r.message)}</td><td>{html.escape(r.reporter or '')}</td></tr>"
        for r in open_reports
    )
    failure_rows = "".join(
        f"<tr><td>{html.escape(str(f[0]))}</td><td>{html.escape(str(f[1]))}</td>"
        f"<td>{html.escape(str(f[2] or ''))}</td><td>{html.escape(str(f[3]))}</td>"
        f"<td>{html.escape(_stamp(f[4]))}</td><td>{html.escape(str(f[5] or ''))}</td></tr>"
        for f in failures
    )
    failing = (
        "<p>No failing expectations in the latest validation of any suite.</p>"
        if failures is not None and not failures
        else "<p>The stewardship report has not been built yet.</p>"
        if failures is None
        else '<table id="failing-expectations"><thead><tr><th>Table</th><th>Expectation</th>'
        "<th>Column</th><th>Severity</th><th>Validated</th><th>Notes</th></tr></thead>"
        f"<tbody>{failure_rows}</tbody></table>"
    )
    reported = (
        '<table id="open-reports"><thead><tr><th>Report</th><th>Dataset</th><th>Reported</th>'
        f"<th>Problem</th><th>By</th></tr></thead><tbody>{report_rows}</tbody></table>"
        if open_reports
        else "<p>No open reports.</p>"
    )
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Data quality: what needs a steward</title>
<style>body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;line-height:1.45}}
table{{border-collapse:collapse}} th,td{{border:1px solid #ccd;padding:.2rem .5rem;text-align:left}}
</style></head>
<body>
<h1>Data quality: what needs a steward</h1>
<p><a href="index.html">Documentation</a></p>
<h2>Open problem reports ({len(open_reports)})</h2>
<p>Close one with <code>python -m civic_warehouse feedback close ID --resolution "..."</code>.</p>
{reported}
<h2>Failing expectations ({len(failures or [])})</h2>
<p>The latest validation of each suite (<code>stewardship.quality_open_failures</code>);
details in the <a href="quality/index.html">Data Docs</a>.</p>
{failing}
</body>
</html>
"""


def _open_failures(conn: psycopg.Connection) -> list[tuple] | None:
    relation = "stewardship.quality_open_failures"
    if not conn.execute("select to_regclass(%s) is not null", [relation]).fetchone()[0]:
        return None
    return conn.execute(
        "select table_name, expectation, column_name, severity, validated_at, notes "
        "from stewardship.quality_open_failures order by severity, table_name, expectation"
    ).fetchall()


def _text(value: str | None, name: str, limit: int) -> str:
    text = (value or "").strip()
    if not text:
        raise FeedbackError(f"the {name} is empty: say what is wrong")
    if len(text) > limit:
        raise FeedbackError(f"the {name} is {len(text)} characters long; at most {limit}")
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in text):
        raise FeedbackError(f"the {name} contains control characters")
    return text


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
