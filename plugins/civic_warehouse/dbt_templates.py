"""dbt's compiled Jinja templates kept on disk, so that a dbt process does not compile them again.

dbt renders every macro, model and test it runs from Jinja source, and compiles each of them in
every process (parsing, generating Python, compiling that): a daily incremental build compiled
some 280 templates, about 0.4 s of its 3.5-4 s of CPU (measured with this cache and without it).
Jinja's own bytecode cache serves only templates loaded through a loader; dbt renders from strings
(``Environment.from_string``), which never consult it. :func:`cached_compilation` wraps the
compilation of dbt's environments so that each compiled template is stored once and read back by
later processes.

A stored template is found only by a key made of everything Jinja's compilation reads: the source,
its name and file name, the environment's class, extensions, syntax and code generation settings,
its filters and tests with what they are passed, and the versions of Jinja, dbt's Jinja layer and
Python. A changed macro, filter or upgrade therefore compiles afresh rather than reading another
template's code. Environments whose compilation could depend on something the key cannot name (a
callable ``autoescape`` or a ``finalize``) are not cached. The cache is an optimisation only: an
entry that cannot be read is compiled again and rewritten, a directory that cannot be written
leaves compilation as it was. Entries not used for :data:`KEEP_UNUSED` are removed.

``CW_DBT_TEMPLATE_CACHE`` names the directory (default ``build/dbt-templates`` in the project);
set to an empty value it turns the cache off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import logging
import marshal
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

from civic_warehouse import settings

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "CW_DBT_TEMPLATE_CACHE"
DEFAULT_CACHE_DIR = settings.BUILD_DIR / "dbt-templates"
# An entry not read for this long is removed; a read marks an entry used at most once a day.
KEEP_UNUSED = 30 * 24 * 3600
_MARK_USED_AFTER = 24 * 3600
# The file format: a changed layout is a different file name, never misread.
_FORMAT = "1"
_SUFFIX = ".code"
_PRUNED_STAMP = ".pruned"


def cache_dir() -> Path | None:
    """The cache's directory, or None when the environment turns it off."""
    configured = os.environ.get(CACHE_DIR_ENV)
    if configured is None:
        return DEFAULT_CACHE_DIR
    return Path(configured) if configured.strip() else None


@contextlib.contextmanager
def cached_compilation(directory: Path | None = None) -> Iterator[None]:
    """dbt's Jinja environments compile through the cache in ``directory`` (default
    :func:`cache_dir`) while inside, as they did before afterwards."""
    from dbt_common.clients.jinja import MacroFuzzEnvironment

    directory = cache_dir() if directory is None else directory
    if directory is None:
        yield
        return
    _prune(directory)
    original = MacroFuzzEnvironment.__dict__.get("compile")
    MacroFuzzEnvironment.compile = _caching(MacroFuzzEnvironment.compile, directory)
    try:
        yield
    finally:
        if original is None:
            del MacroFuzzEnvironment.compile
        else:
            MacroFuzzEnvironment.compile = original


def _caching(compile_: Callable[..., Any], directory: Path) -> Callable[..., Any]:
    @functools.wraps(compile_)
    def compile(
        env: Any,
        source: Any,
        name: str | None = None,
        filename: str | None = None,
        raw: bool = False,
        defer_init: bool = False,
    ) -> Any:
        key = None
        if isinstance(source, str) and not raw and not _debugging_macros():
            key = _key(env, source, name, filename, defer_init)
        if key is None:
            return compile_(env, source, name, filename, raw, defer_init)
        path = directory / f"{key}{_SUFFIX}"
        code = _read(path)
        if code is None:
            code = compile_(env, source, name, filename, raw, defer_init)
            _write(path, code)
        return code

    return compile


def _debugging_macros() -> bool:
    # dbt's macro debugging puts each template's Python in the line cache as it compiles.
    from dbt_common.clients import jinja

    return bool(jinja.MACRO_DEBUGGING)


def _key(
    env: Any, source: str, name: str | None, filename: str | None, defer_init: bool
) -> str | None:
    setting = _environment_setting(env)
    if setting is None:
        return None
    digest = hashlib.sha256(setting.encode())
    digest.update(repr((name, filename, defer_init)).encode())
    digest.update(source.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _environment_setting(env: Any) -> str | None:
    """What of ``env`` its compilation reads, as text; None if it cannot all be named."""
    if callable(env.autoescape) or env.finalize is not None:
        return None
    cls = type(env)
    return repr(
        (
            _FORMAT,
            _versions(),
            f"{cls.__module__}.{cls.__qualname__}",
            f"{cls.code_generator_class.__module__}.{cls.code_generator_class.__qualname__}",
            sorted(f"{type(e).__module__}.{type(e).__qualname__}" for e in env.iter_extensions()),
            tuple(
                getattr(env, option)
                for option in (
                    "block_start_string",
                    "block_end_string",
                    "variable_start_string",
                    "variable_end_string",
                    "comment_start_string",
                    "comment_end_string",
                    "line_statement_prefix",
                    "line_comment_prefix",
                    "trim_blocks",
                    "lstrip_blocks",
                    "newline_sequence",
                    "keep_trailing_newline",
                    "optimized",
                    "autoescape",
                    "is_async",
                    "sandboxed",
                )
            ),
            sorted(getattr(env, "intercepted_binops", ())),
            sorted(getattr(env, "intercepted_unops", ())),
            _callables(env.filters),
            _callables(env.tests),
        )
    )


def _callables(functions: dict[str, Any]) -> list[tuple[str, str]]:
    # Jinja's code generation checks each filter and test exists and calls it by what it is passed.
    return sorted((name, str(getattr(f, "jinja_pass_arg", None))) for name, f in functions.items())


@functools.cache
def _versions() -> tuple[str, ...]:
    packages = ("jinja2", "dbt-common", "dbt-core", "markupsafe")
    return (sys.implementation.cache_tag or "", *(importlib.metadata.version(p) for p in packages))


def _read(path: Path) -> CodeType | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        code = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        log.debug("dbt template cache: %s cannot be read; compiling again", path)
        return None
    if not isinstance(code, CodeType):
        return None
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > _MARK_USED_AFTER:
            os.utime(path)
    return code


def _write(path: Path, code: CodeType) -> None:
    # Written aside, then renamed: dbt's threads, or another dbt process, read only whole files.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(marshal.dumps(code))
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as err:
        log.debug("dbt template cache: cannot write %s (%s)", path, err)


def _prune(directory: Path) -> None:
    """Remove the entries not used for :data:`KEEP_UNUSED` (at most once a day)."""
    stamp = directory / _PRUNED_STAMP
    now = time.time()
    try:
        if now - stamp.stat().st_mtime < _MARK_USED_AFTER:
            return
    except OSError:
        pass
    try:
        directory.mkdir(parents=True, exist_ok=True)
        stamp.touch()
        entries = list(directory.iterdir())
    except OSError:
        return
    for entry in entries:
        with contextlib.suppress(OSError):
            stale = now - entry.stat().st_mtime > KEEP_UNUSED
            if stale and entry.name.endswith((_SUFFIX, ".tmp")):
                entry.unlink()
