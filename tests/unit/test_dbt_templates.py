"""dbt's compiled Jinja templates on disk: read back instead of compiled, never another's code."""

from __future__ import annotations

import os
import time

import jinja2
import pytest
from dbt_common.clients import jinja as dbt_jinja

from civic_warehouse import dbt_templates

MACRO = "{% set loud = name | upper %}{{ loud }}! x{{ n + 1 }}"


@pytest.fixture
def generated(monkeypatch):
    """Counts Jinja's code generations (the step a cached template skips)."""
    calls = []
    generate = jinja2.Environment._generate

    def counting(self, *args, **kwargs):
        calls.append(1)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Environment, "_generate", counting)
    return calls


def render(source: str = MACRO, native: bool = False, **ctx) -> object:
    ctx = {"name": "noise", "n": 1} | ctx
    template = dbt_jinja.get_template(source, {}, native=native)
    return dbt_jinja.render_template(template, ctx)


def entries(directory) -> list[str]:
    return sorted(p.name for p in directory.glob(f"*{dbt_templates._SUFFIX}"))


def test_a_template_compiled_once_is_read_back_by_the_next_process(tmp_path, generated):
    plain = render()
    with dbt_templates.cached_compilation(tmp_path):
        first = render()
    compiled_first = len(generated)
    # A new process would start with nothing in memory: only the files carry over.
    with dbt_templates.cached_compilation(tmp_path):
        second = render(name="calm")

    assert plain == first == "NOISE! x2"
    assert second == "CALM! x2"
    assert len(entries(tmp_path)) == 1
    assert compiled_first == 2 and len(generated) == 2  # read back, not generated again


def test_each_environment_and_source_has_its_own_entry(tmp_path, generated):
    with dbt_templates.cached_compilation(tmp_path):
        text = render("{{ n + 1 }}")
        native = render("{{ n + 1 }}", native=True)
        other = render("{{ n + 2 }}")

    # dbt's native environment returns Python values, its text one strings: different code.
    assert (text, native, other) == ("2", 2, "3")
    assert len(entries(tmp_path)) == 3


def test_a_filter_an_environment_lacks_is_never_taken_from_one_that_had_it(tmp_path):
    def environment(with_filter: bool) -> jinja2.Environment:
        env = dbt_jinja.MacroFuzzEnvironment()
        if with_filter:
            env.filters["shout"] = str.upper
        return env

    with dbt_templates.cached_compilation(tmp_path):
        assert environment(True).from_string("{{ 'a' | shout }}").render({}) == "A"
        with pytest.raises(jinja2.TemplateAssertionError, match="No filter named 'shout'"):
            environment(False).from_string("{{ 'a' | shout }}")


def test_an_entry_that_cannot_be_read_is_compiled_again_and_rewritten(tmp_path, generated):
    with dbt_templates.cached_compilation(tmp_path):
        render()
    [entry] = tmp_path.glob(f"*{dbt_templates._SUFFIX}")
    entry.write_bytes(entry.read_bytes()[:20])  # as if cut off

    with dbt_templates.cached_compilation(tmp_path):
        assert render() == "NOISE! x2"
        assert len(generated) == 2
        assert render() == "NOISE! x2"  # rewritten whole: read back
        assert len(generated) == 2


def test_a_directory_that_cannot_be_written_leaves_compilation_as_it_was(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")

    with dbt_templates.cached_compilation(blocked / "cache"):
        assert render() == "NOISE! x2"


def test_an_empty_setting_turns_the_cache_off(tmp_path, monkeypatch, generated):
    monkeypatch.setenv(dbt_templates.CACHE_DIR_ENV, "")
    assert dbt_templates.cache_dir() is None
    original = dbt_jinja.MacroFuzzEnvironment.compile

    with dbt_templates.cached_compilation():
        assert dbt_jinja.MacroFuzzEnvironment.compile is original
        render()

    monkeypatch.setenv(dbt_templates.CACHE_DIR_ENV, str(tmp_path / "here"))
    assert dbt_templates.cache_dir() == tmp_path / "here"
    monkeypatch.delenv(dbt_templates.CACHE_DIR_ENV)
    assert dbt_templates.cache_dir() == dbt_templates.DEFAULT_CACHE_DIR


def test_compilation_is_set_back_afterwards(tmp_path):
    original = dbt_jinja.MacroFuzzEnvironment.compile

    with dbt_templates.cached_compilation(tmp_path):
        assert dbt_jinja.MacroFuzzEnvironment.compile is not original

    assert dbt_jinja.MacroFuzzEnvironment.compile is original
    assert "compile" not in vars(dbt_jinja.MacroFuzzEnvironment)


def test_macro_debugging_compiles_as_dbt_does(tmp_path, monkeypatch):
    monkeypatch.setattr(dbt_jinja, "MACRO_DEBUGGING", True)

    with dbt_templates.cached_compilation(tmp_path):
        assert render() == "NOISE! x2"

    assert entries(tmp_path) == []


def test_entries_unused_for_a_month_are_removed(tmp_path):
    with dbt_templates.cached_compilation(tmp_path):
        render("{{ 1 }}")
        render("{{ 2 }}")
    old, recent = sorted(tmp_path.glob(f"*{dbt_templates._SUFFIX}"))
    month_ago = time.time() - dbt_templates.KEEP_UNUSED - 60
    os.utime(old, (month_ago, month_ago))
    os.utime(tmp_path / dbt_templates._PRUNED_STAMP, (month_ago, month_ago))

    with dbt_templates.cached_compilation(tmp_path):
        pass

    assert entries(tmp_path) == [recent.name]
