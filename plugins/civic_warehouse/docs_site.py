"""One documentation site for stewards: the dbt docs and the GX Data Docs behind one index page.

Written to ``build/docs/`` after every run; ``make docs`` serves it.
"""

from __future__ import annotations

import html
import shutil
from datetime import UTC, datetime
from pathlib import Path

from civic_warehouse import settings, transform

SITE_DIR = settings.BUILD_DIR / "docs"
DBT_FILES = ("index.html", "manifest.json", "catalog.json")


def build(site: Path = SITE_DIR) -> Path:
    """Copy both sites under ``site`` and write its index; returns the index page."""
    # Imports GX: not at import time, which the DAG files pay for.
    from civic_warehouse import data_docs

    dbt_target = transform.docs_target_dir()
    data_docs_site = settings.EXPECTATIONS_DIR / "uncommitted" / "data_docs" / "local_site"
    (site / "dbt").mkdir(parents=True, exist_ok=True)
    for name in DBT_FILES:
        if (dbt_target / name).exists():
            shutil.copy2(dbt_target / name, site / "dbt" / name)
    if data_docs_site.exists():
        shutil.copytree(data_docs_site, site / "quality", dirs_exist_ok=True)
        # Pages written before the gate made its pages offline (an older release) are made so too.
        data_docs.make_offline(site / "quality")
    index = site / "index.html"
    index.write_text(_index_html(datetime.now(UTC)))
    return index


def _index_html(generated_at: datetime) -> str:
    stamp = html.escape(generated_at.strftime("%Y-%m-%d %H:%M UTC"))
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
</ul>
<p>Validation history is also in the warehouse, in <code>quality.validation_results</code>.</p>
</body>
</html>
"""
