"""Catalog values and server answers written into a request, quoted or refused by the connector.

The catalog refuses field names and dataset paths that could change a request, but a
``SourceConfig`` can also be built in code, and some names come from the server itself (an ArcGIS
layer's ``objectIdField``, its object ids). So each connector writes such a value only through
these functions: a value that cannot be quoted for its place is refused with a ``ValueError``
naming the source, never sent.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from civic_warehouse.catalog import SourceConfig, is_field_name

# Socrata's system fields, written bare: SoQL names them with a leading colon, which a quoted
# identifier would make a column name of its own.
SOCRATA_SYSTEM_FIELDS = frozenset({":id", ":created_at", ":updated_at", ":version"})
_SOQL_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def soql_field(source: SourceConfig, field: str) -> str:
    """A column name as a SoQL identifier: bare when it is one by itself, else in backticks (as
    SoQL quotes a name that is not an identifier; it has no escape for a backtick inside)."""
    if field in SOCRATA_SYSTEM_FIELDS or _SOQL_IDENTIFIER.fullmatch(field):
        return field
    if not field or "`" in field or field.startswith(":"):
        raise ValueError(f"source {source.name!r}: {field!r} cannot be quoted as a SoQL column")
    return f"`{field}`"


def plain_field(source: SourceConfig, field: Any, what: str = "field") -> str:
    """A field name the protocol has no quoting for (ArcGIS ``where``, CKAN ``sort``): only a
    name of the form the catalog accepts is written, anything else refused."""
    if not isinstance(field, str) or not is_field_name(source.protocol, field):
        raise ValueError(
            f"source {source.name!r}: {what} {field!r} is not a plain {source.protocol} field "
            "name, so it is not written into the request"
        )
    return field


def path_segment(source: SourceConfig, value: str) -> str:
    """One segment of a URL path: every character that is not unreserved is percent-encoded, so
    the value cannot add a segment, a query or a fragment."""
    if value in ("", ".", ".."):
        raise ValueError(f"source {source.name!r}: {value!r} is not a URL path segment")
    return quote(value, safe="")


def url_path(source: SourceConfig, path: str) -> str:
    """A path of segments (an ArcGIS service path, ``Folder/Service/FeatureServer/0``), each
    quoted by :func:`path_segment`."""
    return "/".join(path_segment(source, segment) for segment in path.strip("/").split("/"))
