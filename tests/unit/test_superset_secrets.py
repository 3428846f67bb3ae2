"""Superset's secrets: from the environment, or generated once for local use and kept private."""

from __future__ import annotations

import stat

import pytest

from civic_warehouse import superset


@pytest.fixture
def no_secrets_in_environment(monkeypatch):
    for name in superset.SECRET_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_unset_secrets_are_generated_once_and_kept_private(tmp_path, no_secrets_in_environment):
    first = superset.Secrets.load(tmp_path)
    assert first.generated == superset.SECRET_VARIABLES
    assert len({first.secret_key, first.admin_password, first.bi_reader_password}) == 3
    assert all(len(value) >= 32 for value in (first.secret_key, first.admin_password))
    stored = tmp_path / "secrets.generated.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert superset.Secrets.load(tmp_path) == first  # the same login on every `make bi`


def test_secrets_from_the_environment_win_and_are_not_written(
    tmp_path, monkeypatch, no_secrets_in_environment
):
    monkeypatch.setenv("SUPERSET_ADMIN_PASSWORD", "chosen-by-the-city")
    monkeypatch.setenv("SUPERSET_SECRET_KEY", "from-the-secret-store")
    monkeypatch.setenv("BI_READER_PASSWORD", "from-the-secret-store-too")
    keys = superset.Secrets.load(tmp_path)
    assert keys.admin_password == "chosen-by-the-city"
    assert keys.secret_key == "from-the-secret-store"
    assert keys.generated == ()
    assert not (tmp_path / "secrets.generated.json").exists()
