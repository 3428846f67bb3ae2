"""The GX Data Docs as data stewards meet them: readable offline, and each expectation's severity and
steward notes beside its result.

GX's page templates load jQuery, Bootstrap, bootstrap-table, Font Awesome and Vega from CDNs, and
the validations list, the status icons and the styling all need them: on a city network without
the internet the index lists nothing and the pages render unstyled. ``make_offline`` copies the
same releases, kept in ``expectations/plugins/custom_data_docs/assets`` (from npm, with their
licenses), into the site and points the pages at them.

``StewardValidationResultsColumnSectionRenderer`` renders the validation pages' sections
(``site_section_builders`` in ``great_expectations.yml``): GX's own, with a Severity and a Steward
notes column.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from pathlib import Path

from great_expectations.expectations.metadata_types import FailureSeverity
from great_expectations.render import RenderedStringTemplateContent, RenderedTableContent
from great_expectations.render.renderer import ValidationResultsColumnSectionRenderer

from civic_warehouse import settings

log = logging.getLogger(__name__)

ASSETS_DIR = settings.EXPECTATIONS_DIR / "plugins" / "custom_data_docs" / "assets"
# Under the site's static/ folder, which GX fills with its own images and styles.
SITE_ASSETS = Path("static") / "offline"

# Every CDN file GX 1.24's templates load, and its copy under ASSETS_DIR (same release).
CDN_COPIES = {
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": (
        "popper.js-1.12.9/popper.min.js"
    ),
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": (
        "bootstrap-4.3.1/css/bootstrap.min.css"
    ),
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": (
        "bootstrap-4.3.1/js/bootstrap.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": (
        "bootstrap-table-1.19.1/bootstrap-table.min.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": (
        "bootstrap-table-1.19.1/bootstrap-table.min.js"
    ),
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.js": (
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js"
    ),
    # The templates name 1.19.0 for the filter control's stylesheets: the same files as in 1.19.1.
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.css": (
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.css"
    ),
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/"
    "bootstrap-table-filter-control.min.css": (
        "bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.css"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/"
    "bootstrap-datepicker.min.css": "bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/"
    "bootstrap-datepicker.min.js": "bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    # The minified build of the same stylesheet (a sixth of the size).
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/"
    "bootstrap-prefers-dark.css": "bootstrap-dark-1.1.0/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": (
        "fontawesome-free-6.6.0/css/all.min.css"
    ),
    # Major versions only in the templates: the newest release of each when vendored.
    "https://cdn.jsdelivr.net/npm/vega@5": "vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": "vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": "vega-embed-6.29.0/vega-embed.min.js",
}
# The navbar's logo comes from GX's web assets, with the data context's id in its query string;
# GX ships the same image in the site's static/images/.
GX_WEB_ASSETS = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
_IMAGES = "static/images/"

_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.IGNORECASE)
_URL = re.compile(r"""\b(src|href)=(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
# Subresource integrity and CORS mode are for third-party hosts: a page opened as a file (the
# gate's message names it) would have its own copies refused as cross-origin.
_CDN_ONLY = re.compile(r"""\s+(?:integrity|crossorigin)=(["']).*?\1""", re.IGNORECASE | re.DOTALL)
_EXTERNAL = re.compile(r"""^(?:https?:)?//""", re.IGNORECASE)

SEVERITY_COLUMN = "Severity"
NOTES_COLUMN = "Steward notes"
SEVERITY_BADGES = {"critical": "badge-danger", "warning": "badge-warning"}


class StewardValidationResultsColumnSectionRenderer(ValidationResultsColumnSectionRenderer):
    """GX's section of a validation page for one column, with each expectation's severity and
    steward notes beside its result.

    The project keeps both in GX's own fields of the expectation (``severity``, ``notes``), which
    GX's validation pages do not show. (GX's meta-properties columns cannot stand in: GX 1.24
    fails to render an expectation whose kwargs name them.)
    """

    def render(self, validation_results, suite_parameters=None):
        section = super().render(validation_results, suite_parameters)
        table = section.content_blocks[-1]
        # GX renders one row per result, in their order.
        if not isinstance(table, RenderedTableContent) or len(table.table) != len(
            validation_results
        ):
            log.warning("Data Docs: no severity and notes for section %s", section.section_name)
            return section
        table.header_row = [*table.header_row, SEVERITY_COLUMN, NOTES_COLUMN]
        for column in (SEVERITY_COLUMN, NOTES_COLUMN):
            table.header_row_options[column] = {"sortable": True}
        for row, result in zip(table.table, validation_results, strict=True):
            config = result.expectation_config
            severity = FailureSeverity(config.severity).value if config else ""
            notes = notes_text(config.notes) if config else ""
            row.extend([_text(severity, SEVERITY_BADGES.get(severity)), _text(notes)])
        return section


def notes_text(notes: str | list[str] | None) -> str:
    if not notes:
        return ""
    return notes if isinstance(notes, str) else " ".join(notes)


def _text(value: str, badge: str | None = None) -> RenderedStringTemplateContent:
    # A string template, so GX escapes the value as it does every parameter.
    styling = {"params": {"value": {"classes": ["badge", badge]}}} if badge else {}
    return RenderedStringTemplateContent(
        content_block_type="string_template",
        string_template={"template": "$value", "params": {"value": value}, "styling": styling},
    )


def make_offline(site: Path) -> int:
    """Serve every CDN file of the Data Docs site ``site`` from the site itself; returns how many
    pages were rewritten. Pages already rewritten are left as they are."""
    if not site.is_dir():
        return 0
    shutil.copytree(ASSETS_DIR, site / SITE_ASSETS, dirs_exist_ok=True)
    rewritten = 0
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if "://" not in text:
            continue
        local = _TAG.sub(functools.partial(_local_tag, site=site, folder=page.parent), text)
        if local != text:
            page.write_text(local, encoding="utf-8")
            rewritten += 1
        if remote := external_resources(local):
            log.warning("Data Docs page %s still loads %s", page, ", ".join(sorted(remote)))
    return rewritten


def external_resources(html: str) -> set[str]:
    """The scripts, stylesheets and images a page loads from another host."""
    return {
        match.group(3)
        for tag in _TAG.finditer(html)
        for match in _URL.finditer(tag.group(0))
        if _EXTERNAL.match(match.group(3))
    }


def _local_tag(found: re.Match[str], site: Path, folder: Path) -> str:
    tag = found.group(0)
    match = _URL.search(tag)
    if not match:
        return tag
    url = match.group(3)
    if url in CDN_COPIES:
        target = site / SITE_ASSETS / CDN_COPIES[url]
    elif url.startswith(GX_WEB_ASSETS):
        name = url.removeprefix(GX_WEB_ASSETS).split("?", 1)[0]
        target = site / _IMAGES / name
    elif _IMAGES in url and not _EXTERNAL.match(url) and not (folder / url).exists():
        # GX's validation pages link their favicon one folder short of the site's root.
        target = site / _IMAGES / url.rsplit(_IMAGES, 1)[1]
    else:
        return tag
    relative = Path(os.path.relpath(target, folder)).as_posix()
    tag = tag[: match.start(3)] + relative + tag[match.end(3) :]
    return _CDN_ONLY.sub("", tag)
