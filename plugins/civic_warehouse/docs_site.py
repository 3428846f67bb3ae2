"""One documentation site for stewards: the dbt docs and the GX Data Docs behind one index page,
with the data inventory (``data.json``) and the page of what needs a steward (open problem reports
beside failing expectations).

Written to ``build/docs/`` after every run; ``make docs`` serves it.
"""

from __future__ import annotations

import html
import shutil
from datetime import UTC, datetime
from pathlib import Path

from civic_warehouse import feedback, inventory, settings, transform

SITE_DIR = settings.BUILD_DIR / "docs"
DBT_FILES = ("index.html", "manifest.json", "catalog.json")


def build(site: Path = SITE_DIR, url: str | None = None, dbt_docs: Path | None = None) -> Path:
    """Copy both sites under ``site``, write the inventory, the stewards' page and the index from
    the warehouse at ``url``; returns the index page. ``dbt_docs``: where ``dbt docs generate``
    just wrote (the one the caller used), else the default docs target."""
    # Imports GX: not at import time, which the DAG files pay for.
    from civic_warehouse import data_docs

    dbt_target = dbt_docs or transform.docs_target_dir()
    data_docs_site = settings.EXPECTATIONS_DIR / "uncommitted" / "data_docs" / "local_site"
    (site / "dbt").mkdir(parents=True, exist_ok=True)
    for name in DBT_FILES:
        if (dbt_target / name).exists():
            shutil.copy2(dbt_target / name, site / "dbt" / name)
    if data_docs_site.exists():
        shutil.copytree(data_docs_site, site / "quality", dirs_exist_ok=True)
        # Pages written before the gate made its pages offline (an older release) are made so too.
        data_docs.make_offline(site / "quality")
    catalog = inventory.build(url)
    inventory.write(catalog, site / "data.json")
    (site / "stewardship.html").write_text(feedback.stewards_page(url))
    index = site / "index.html"
    index.write_text(_index_html(datetime.now(UTC), catalog))
    return index


def _index_html(generated_at: datetime, catalog: inventory.Inventory) -> str:
    stamp = html.escape(generated_at.strftime("%Y-%m-%d %H:%M UTC"))
    levels = [dataset.access_level for dataset in catalog.datasets]
    counts = ", ".join(f"{levels.count(level)} {level}" for level in inventory.ACCESS_LEVELS)
    coverage = html.escape(catalog.coverage.describe())
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>civic-warehouse documentation</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:3rem auto;line-height:1.5}}
a{{font-size:1.2rem}} li{{margin:1rem 0}}</style></head>
<body>
<h1>civic-warehouse documentation</h1>
<p>Generated {stamp}.</p>
<ul>
<li><a href="dbt/index.html">Data model (dbt docs)</a><br>
Every source, staging model and published mart: descriptions, columns, tests and lineage.</li>
<li><a href="quality/index.html">Data quality (Great Expectations Data Docs)</a><br>
Every validation of the candidate marts: which expectations passed or failed, with sample values.
Critical failures blocked publishing; warnings were published and recorded.</li>
<li><a href="stewardship.html">What needs a steward</a><br>
Open problem reports from users and residents, beside the expectations failing now.</li>
<li><a href="data.json">Data inventory (data.json, DCAT-US 1.1)</a><br>
{len(catalog.datasets)} datasets ({counts}).
<span id="department-coverage">Coverage: {coverage}.</span></li>
</ul>
<p>Validation history is also in the warehouse, in <code>quality.validation_results</code>.</p>
</body>
</html>
"""
