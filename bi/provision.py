"""Provision Superset from the files in bi/assets: the admin user, then the warehouse connection,
datasets, charts and dashboard, imported as one asset bundle (overwriting what was there).

Runs inside Superset's own virtualenv (bi/.venv), started by ``civic_warehouse.superset``, which
passes everything through the environment:

* ``SUPERSET_ADMIN_USERNAME``, ``SUPERSET_ADMIN_PASSWORD``: the admin login (password reset to it);
* ``CIVIC_BI_HOST``, ``CIVIC_BI_PORT``, ``CIVIC_BI_DATABASE``: where the warehouse listens; they
  replace ``${host}``, ``${port}`` and ``${database}`` in the database file's ``sqlalchemy_uri``;
* ``BI_READER_PASSWORD``: the ``bi_reader`` role's password. The bundle keeps it masked, as
  Superset's own exports do; it is handed to the import the way the REST API's ``passwords``
  field is, so it is never written to a file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from string import Template

import yaml

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
DATABASE_FILE = "databases/civic_warehouse.yaml"


def bundle_contents() -> dict[str, str]:
    """The bundle as Superset's importer takes it: path inside the bundle -> YAML text."""
    contents = {
        path.relative_to(ASSETS_DIR).as_posix(): path.read_text()
        for path in sorted(ASSETS_DIR.rglob("*.yaml"))
    }
    contents[DATABASE_FILE] = Template(contents[DATABASE_FILE]).substitute(
        host=os.environ["CIVIC_BI_HOST"],
        port=os.environ["CIVIC_BI_PORT"],
        database=os.environ["CIVIC_BI_DATABASE"],
    )
    # Superset's importer reports a YAML error without the file: name it here.
    for name, text in contents.items():
        try:
            yaml.safe_load(text)
        except yaml.YAMLError as err:
            sys.exit(f"Superset: bi/assets/{name} is not valid YAML: {err}")
    return contents


def ensure_admin(security_manager) -> object:
    username = os.environ["SUPERSET_ADMIN_USERNAME"]
    password = os.environ["SUPERSET_ADMIN_PASSWORD"]
    user = security_manager.find_user(username=username)
    if user is None:
        user = security_manager.add_user(
            username,
            "City",
            "Analyst",
            f"{username}@localhost",
            security_manager.find_role("Admin"),
            password=password,
        )
        if not user:
            sys.exit(f"Superset: could not create the admin user {username!r}")
    else:
        security_manager.reset_password(user.id, password)
    return user


def main() -> int:
    from flask import g
    from superset.app import create_app

    app = create_app()
    with app.app_context(), app.test_request_context():
        from superset import db, security_manager
        from superset.commands.exceptions import CommandInvalidError, ImportFailedError
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.connectors.sqla.models import SqlaTable

        g.user = ensure_admin(security_manager)
        db.session.commit()
        command = ImportAssetsCommand(
            bundle_contents(), passwords={DATABASE_FILE: os.environ["BI_READER_PASSWORD"]}
        )
        try:
            command.run()
        except CommandInvalidError as err:
            # Name the file and field that is wrong rather than "Error importing assets".
            sys.exit(f"Superset: bi/assets is not a valid bundle: {err.normalized_messages()}")
        except ImportFailedError as err:
            sys.exit(f"Superset: importing bi/assets failed: {err.__cause__ or err}")
        # The dataset files name tables, not columns: read the columns (types, which are dates)
        # from the published marts, so the datasets follow the dbt models as they change.
        for dataset in db.session.query(SqlaTable).filter_by(schema="open"):
            try:
                dataset.fetch_metadata()
            except Exception as err:  # Superset raises a different error per engine and cause
                sys.exit(
                    f"Superset: cannot read the columns of open.{dataset.table_name} as bi_reader "
                    f"({err}); has the pipeline published, and has the role its password?"
                )
        db.session.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
