"""Cosmos' watcher-mode classes, changed in what they store and read, not in what they run, and
with retries whose commands dbt accepts.

Cosmos 1.15's watcher producer runs one ``dbt build`` and stores each dbt node's progress and result
as XComs, which the model tasks read. Every store is a round trip to Airflow's API made under one
lock that dbt's threads wait on: as Cosmos ships it, the producer's build took two to four times
the same build run bare. The producer here stores nothing while dbt runs and, once it is done, only
what the model tasks read; the model tasks skip calls a first try never needs, and a retry, which
reruns its own node, leaves out the options its dbt command does not have. Airflow and Cosmos are
imported inside the functions, as in the rest of the package.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def watching_tasks(node: Any, producer_task_id: str) -> Iterator[Any]:
    """The tasks (in nested groups too) that watch the producer ``producer_task_id``."""
    children = getattr(node, "children", None)
    if children is not None:
        for child in children.values():
            yield from watching_tasks(child, producer_task_id)
    elif getattr(node, "producer_task_id", None) == producer_task_id:
        yield node


# dbt's per-node progress events before a node finishes. Cosmos' watcher producer stores each one
# in an XCom (a round trip to the Airflow API, serialized behind one lock that dbt's threads wait
# on) though only the node's final event is ever read; they are dbt debug messages, not logged.
_NODE_PROGRESS_EVENTS = frozenset({"NodeStart", "NodeCompiling", "NodeExecuting"})
# The endings of the XCom keys Cosmos' parser stores per dbt node (`_tests_status` included).
_NODE_XCOM_SUFFIXES = ("_status", "_dbt_event", "_compiled_sql")


class HeldXComs:
    """Stands in for the producer's task instance while dbt runs: keeps its XComs until the end.

    Each XCom push is a round trip to Airflow's API made under a lock dbt's threads wait on, and
    the API (in process under ``dag.test``) competes with them for the GIL: ~500 pushes doubled
    the build. The model tasks only start once the producer has finished (`dbt_task_group`), so
    nobody can read a result earlier; :meth:`flush` stores them when dbt is done, whatever its
    outcome, through Cosmos' own push (which also keeps its retry backup). Keys of nodes no task
    watches (a test's own event and status: the test tasks read their model's aggregate) are
    dropped: nothing reads them. A producer killed outright (no ``finally``) now stores no result
    at all, where it used to leave those of the nodes it had finished: each model task then finds
    none and reruns its own model, as those of the nodes it had not reached already did.
    """

    # Cosmos' push records every value it stores in this buffer; held values are recorded when
    # they are flushed, not twice.
    _cosmos_xcom_backup_buffer = None

    def __init__(self, ti: Any, watched_keys: frozenset[str] | None) -> None:
        self._ti = ti
        self._watched_keys = watched_keys
        self._values: dict[str, Any] = {}
        self._parser_kwargs: tuple[dict[str, Any], dict[str, Any]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def xcom_push(self, key: str, value: Any) -> None:
        if self._is_read(key):
            self._values[key] = value

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **kwargs: Any) -> Any:
        # Cosmos appends dbt's start-up events to a list it reads back from the producer's XCom.
        if task_ids is None and key in self._values:
            return self._values[key]
        return self._ti.xcom_pull(task_ids, key=key, **kwargs)

    def _is_read(self, key: str) -> bool:
        return (
            self._watched_keys is None
            or not key.endswith(_NODE_XCOM_SUFFIXES)
            or key in self._watched_keys
        )

    def parser_kwargs(self, extra_kwargs: dict[str, Any]) -> dict[str, Any]:
        """The parser's arguments with this object as the context's task instance (Cosmos passes
        the same arguments with every line of one dbt run: they are rebuilt once per run)."""
        if self._parser_kwargs is None or self._parser_kwargs[0] is not extra_kwargs:
            context = {**extra_kwargs["context"], "ti": self, "task_instance": self}
            self._parser_kwargs = (extra_kwargs, {**extra_kwargs, "context": context})
        return self._parser_kwargs[1]

    def flush(self) -> None:
        from cosmos.operators._watcher import safe_xcom_push

        values, self._values = self._values, {}
        for key, value in values.items():
            safe_xcom_push(task_instance=self._ti, key=key, value=value)


def watched_xcom_keys(producer: Any) -> frozenset[str] | None:
    """The per-node XCom keys the tasks watching ``producer`` read; None if they cannot be told."""
    from cosmos.operators._watcher.aggregation import get_tests_status_xcom_key
    from cosmos.operators._watcher.state import (
        get_compiled_sql_xcom_key,
        get_dbt_event_xcom_key,
        get_status_xcom_key,
    )

    dag = getattr(producer, "dag", None)
    if dag is None:
        return None
    nodes = {
        task.model_unique_id
        for task in dag.tasks
        if getattr(task, "producer_task_id", None) == producer.task_id
        and getattr(task, "model_unique_id", None)
    }
    if not nodes:
        return None
    keys = (
        get_status_xcom_key,
        get_dbt_event_xcom_key,
        get_compiled_sql_xcom_key,
        get_tests_status_xcom_key,
    )
    return frozenset(key(node) for node in nodes for key in keys)


@functools.cache
def quiet_producer_class() -> type:
    """Cosmos' watcher producer, minus an XCom per dbt progress event nobody reads, and with the
    nodes' results stored once dbt is done rather than while its threads wait on each.

    With ~330 nodes (models, seeds, tests) dbt fires ~1,000 such events; storing them made the
    producer's `dbt build` three to four times slower than the same build run bare, and the
    ~500 results stored as each node finished still made it twice as slow.
    """
    from cosmos.operators.watcher import DbtProducerWatcherOperator

    class DbtProducerWatcherOperatorQuiet(DbtProducerWatcherOperator):
        _held_xcoms: HeldXComs | None = None

        def run_dbt_runner(self, command: list[str], env: dict[str, str], cwd: str, **kwargs):
            from civic_warehouse import dbt_templates
            from civic_warehouse.dbt_command import collector_for_dbt

            context = kwargs.get("context")
            # dbt runs in this task's process, beside Airflow's own objects: the collector and
            # the templates' cache are set as for the pipeline's dbt processes.
            with collector_for_dbt(), dbt_templates.cached_compilation():
                if context is None or context.get("_check_source_freshness"):
                    return super().run_dbt_runner(command, env, cwd, **kwargs)
                self._held_xcoms = HeldXComs(context["ti"], watched_xcom_keys(self))
                try:
                    return super().run_dbt_runner(command, env, cwd, **kwargs)
                finally:
                    held, self._held_xcoms = self._held_xcoms, None
                    held.flush()

        def _make_parse_callable(self):
            parse = super()._make_parse_callable()

            def parse_unless_progress(line: str, extra_kwargs: Any) -> None:
                try:
                    name = json.loads(line).get("info", {}).get("name")
                except (ValueError, AttributeError):
                    name = None
                if name in _NODE_PROGRESS_EVENTS:
                    return
                held = self._held_xcoms
                if held is not None and extra_kwargs and extra_kwargs.get("context") is not None:
                    extra_kwargs = held.parser_kwargs(extra_kwargs)
                parse(line, extra_kwargs)

            return parse_unless_progress

    return DbtProducerWatcherOperatorQuiet


# Stands for the producer's state until a model task needs it (see `lean_consumer_class`).
_PRODUCER_STATE_UNREAD = object()


@functools.cache
def lean_consumer_class(cosmos_class: type) -> type:
    """A Cosmos model (or tests) task class, minus two API round trips its first try never needs,
    and with retries that run a command dbt accepts.

    The model tasks start once the producer has finished, so on a first try the node's result is
    there and decides alone; Cosmos still asks for the producer's state before reading it, and
    reads dbt's start-up events only to log them at debug level. ~70 such tasks run per build.
    A retry, or a node without a result (the producer failed or was killed before reaching it),
    asks for the producer's state as before.

    Such a retry reruns the task's own node alone (`dbt run`, `seed`, `snapshot` or `test`), with
    the group's flags and those of the producer's build. Cosmos passes them all on, though some are
    not options of that command (`dbt run` has no --exclude-resource-type, `dbt snapshot` no
    --full-refresh): dbt refused every such retry. They are left out of it (`dbt_options_only`).
    """

    class LeanConsumer(cosmos_class):
        def _get_producer_task_status(self, context: Any) -> Any:
            if context["ti"].try_number > 1:
                return super()._get_producer_task_status(context)
            return _PRODUCER_STATE_UNREAD

        def _handle_no_dbt_node_status(
            self, producer_task_state: Any, try_number: int, context: Any
        ) -> bool:
            if producer_task_state is _PRODUCER_STATE_UNREAD:
                producer_task_state = super()._get_producer_task_status(context)
            return super()._handle_no_dbt_node_status(producer_task_state, try_number, context)

        def _log_startup_events(self, ti: Any) -> None:
            from cosmos.operators._watcher.base import logger

            if logger.isEnabledFor(logging.DEBUG):
                super()._log_startup_events(ti)

        def _fallback_to_non_watcher_run(self, try_number: int, context: Any) -> bool:
            own = self.dbt_cmd_flags
            self.dbt_cmd_flags = dbt_options_only(self.base_cmd, own)
            try:
                return super()._fallback_to_non_watcher_run(try_number, context)
            finally:
                self.dbt_cmd_flags = own

        def _filter_flags(self, flags: list[str]) -> list[str]:
            return dbt_options_only(self.base_cmd, super()._filter_flags(flags))

    LeanConsumer.__name__ = LeanConsumer.__qualname__ = f"{cosmos_class.__name__}Lean"
    return LeanConsumer


def dbt_options_only(command: list[str], flags: list[str]) -> list[str]:
    """``flags`` without the options (and their values) that the dbt command ``command`` (e.g.
    ``["snapshot"]``) does not have, by dbt's own command line."""
    options = _dbt_command_options(tuple(command))
    if options is None:
        return list(flags)
    kept, dropped, keeping = [], [], True
    for token in flags:
        if token.startswith("-"):
            keeping = token.split("=", 1)[0] in options
        (kept if keeping else dropped).append(token)
    if dropped:
        log.info("not options of dbt %s, left out: %s", " ".join(command), " ".join(dropped))
    return kept


@functools.cache
def _dbt_command_options(command: tuple[str, ...]) -> frozenset[str] | None:
    from dbt.cli.main import cli

    found = cli
    for name in command:
        found = getattr(found, "commands", {}).get(name)
        if found is None:
            return None
    return frozenset(option for p in found.params for option in (*p.opts, *p.secondary_opts))
