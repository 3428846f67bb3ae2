"""Cosmos' watcher-mode classes, changed in what they store and read, not in what dbt runs.

Cosmos 1.15's watcher producer runs one ``dbt build`` and stores each dbt node's progress and result
as XComs, which the model tasks read. Every store is a round trip to Airflow's API made under one
lock that dbt's threads wait on: as Cosmos ships it, the producer's build took two to four times
the same build run bare. The producer here stores nothing while dbt runs and, once it is done, one
XCom per model task with what that task reads; each model task reports on its node and the node's
tests, skips calls a first try never needs, and a retry rebuilds its node with its tests. Airflow
and Cosmos are imported inside the functions, as in the rest of the package.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
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


# dbt hands every event to its callbacks, debug ones included: some twenty per node (its SQL, its
# connections, its progress). Cosmos' callback turns each into JSON (protobuf's MessageToJson, in
# Python, on dbt's threads) before its parser reads the event's name, and keeps an XCom for each
# node's progress, though only a node's final event is ever read. What it reads of debug events:
# a node's end, why a node was skipped, and errors (`_debug_events_read`); every event above
# debug level it also logs.
_DEBUG_EVENTS_READ = frozenset({"NodeFinished", "SkippingDetails", "LogSkipBecauseError"})
# The endings of the XCom keys Cosmos' parser stores per dbt node (the longer of two alike first),
# and the name each has in a node's result (`node_result_key`).
_NODE_XCOM_FIELDS = {
    "_tests_status": "tests_status",
    "_status": "status",
    "_dbt_event": "dbt_event",
    "_compiled_sql": "compiled_sql",
}


def node_result_key(unique_id: str) -> str:
    """The producer's one XCom per watched dbt node: its status, dbt event and compiled SQL,
    its tests' aggregate status and each of its tests' dbt event."""
    return f"{_xcom_prefix(unique_id)}_result"


def _xcom_prefix(unique_id: str) -> str:
    """How Cosmos names a dbt node in its XCom keys."""
    return unique_id.replace(".", "__")


def _split_node_xcom_key(key: str) -> tuple[str, str] | None:
    """(Cosmos' node key prefix, field) of a per-node XCom key, or None for another key."""
    for suffix, field in _NODE_XCOM_FIELDS.items():
        if key.endswith(suffix):
            return key.removesuffix(suffix), field
    return None


class HeldXComs:
    """Stands in for the producer's task instance while dbt runs: keeps its XComs until the end.

    Each XCom push is a round trip to Airflow's API made under a lock dbt's threads wait on, and
    the API (in process under ``dag.test``) competes with them for the GIL: ~500 pushes doubled
    the build. The model tasks only start once the producer has finished (`dbt_task_group`), so
    nobody can read a result earlier; :meth:`flush` stores them when dbt is done, whatever its
    outcome, through Cosmos' own push: what Cosmos stores under four keys per node, as one
    XCom per watched node (`node_result_key`), which its task reads in one request
    (`NodeResults`). ``watched`` maps each watched node to its tests; keys of other nodes are
    dropped: nothing reads them. With ``watched`` None every key is stored as Cosmos stores it.
    A producer killed outright (no ``finally``) stores no result at all: each model task then
    finds none and reruns its own model, as those of the nodes it had not reached already did.
    """

    # Cosmos' push records every value it stores in this buffer; held values are recorded when
    # they are flushed, not twice.
    _cosmos_xcom_backup_buffer = None

    def __init__(self, ti: Any, watched: dict[str, tuple[str, ...]] | None) -> None:
        self._ti = ti
        self._watched = watched
        # Cosmos' key prefix of each watched node and of each of their tests, to its unique id.
        self._held_nodes = {
            _xcom_prefix(held): held
            for node, tests in (watched or {}).items()
            for held in (node, *tests)
        }
        self._values: dict[str, Any] = {}
        self._nodes: dict[str, dict[str, Any]] = {}
        self._parser_kwargs: tuple[dict[str, Any], dict[str, Any]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def xcom_push(self, key: str, value: Any) -> None:
        split = _split_node_xcom_key(key)
        if self._watched is None or split is None:
            self._values[key] = value
            return
        prefix, field = split
        if prefix in self._held_nodes:
            self._nodes.setdefault(self._held_nodes[prefix], {})[field] = value

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **kwargs: Any) -> Any:
        # Cosmos appends dbt's start-up events to a list it reads back from the producer's XCom.
        if task_ids is None and key in self._values:
            return self._values[key]
        return self._ti.xcom_pull(task_ids, key=key, **kwargs)

    def parser_kwargs(self, extra_kwargs: dict[str, Any]) -> dict[str, Any]:
        """The parser's arguments with this object as the context's task instance (Cosmos passes
        the same arguments with every line of one dbt run: they are rebuilt once per run)."""
        if self._parser_kwargs is None or self._parser_kwargs[0] is not extra_kwargs:
            context = {**extra_kwargs["context"], "ti": self, "task_instance": self}
            self._parser_kwargs = (extra_kwargs, {**extra_kwargs, "context": context})
        return self._parser_kwargs[1]

    def results(self) -> dict[str, dict[str, Any]]:
        """What each watched node's task reads: its own fields, and its tests' dbt events."""
        results = {}
        for node, tests in (self._watched or {}).items():
            held = self._nodes.get(node, {})
            if not held:
                continue  # dbt never reached it: its task finds no result, as in Cosmos
            events = {test: self._nodes.get(test, {}).get("dbt_event") for test in tests}
            results[node] = {**held, "tests": events}
        return results

    def flush(self) -> None:
        from cosmos.operators._watcher import safe_xcom_push

        values, self._values = self._values, {}
        for key, value in values.items():
            safe_xcom_push(task_instance=self._ti, key=key, value=value)
        results, self._nodes = self.results(), {}
        for node, result in results.items():
            safe_xcom_push(task_instance=self._ti, key=node_result_key(node), value=result)


class NodeResults:
    """Stands in for a model task's task instance: answers Cosmos' reads of its node's XComs from
    the one result the producer stored for it (`HeldXComs`), every other read from Airflow."""

    def __init__(self, ti: Any, producer_task_id: str, unique_id: str, result: dict) -> None:
        self._ti = ti
        self._producer_task_id = producer_task_id
        self._prefix = _xcom_prefix(unique_id)
        self._result = result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **kwargs: Any) -> Any:
        split = _split_node_xcom_key(key)
        if task_ids == self._producer_task_id and split and split[0] == self._prefix:
            return self._result.get(split[1])
        return self._ti.xcom_pull(task_ids, key=key, **kwargs)


def watched_nodes(producer: Any) -> dict[str, tuple[str, ...]] | None:
    """The dbt nodes the tasks watching ``producer`` report on, each with its tests; None if they
    cannot be told."""
    dag = getattr(producer, "dag", None)
    if dag is None:
        return None
    tests_per_model = getattr(producer, "tests_per_model", None) or {}
    nodes = {
        task.model_unique_id: tuple(tests_per_model.get(task.model_unique_id, ()))
        for task in dag.tasks
        if getattr(task, "producer_task_id", None) == producer.task_id
        and getattr(task, "model_unique_id", None)
    }
    return nodes or None


@functools.cache
def quiet_producer_class() -> type:
    """Cosmos' watcher producer, minus the dbt events nobody reads, and with the nodes' results
    stored once dbt is done rather than while its threads wait on each.

    With ~330 nodes (models, seeds, tests) dbt fires ~1,000 progress events; storing them made the
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
                self._held_xcoms = HeldXComs(context["ti"], watched_nodes(self))
                # In this process dbt's events reach Cosmos through its callback, which writes the
                # task's log; what dbt prints (JSON, for Cosmos' subprocess mode) is discarded
                # unread, after dbt serialized each line: nothing is printed.
                env = {**env, "DBT_LOG_LEVEL": "none"}
                # Cosmos reads each model's compiled SQL (shown by its task) from the temporary
                # project it runs dbt in: a DBT_TARGET_PATH set for the pipeline's own dbt
                # processes must not send dbt's files elsewhere.
                command = [*command, "--target-path", str(Path(cwd) / "target")]
                try:
                    return super().run_dbt_runner(command, env, cwd, **kwargs)
                finally:
                    held, self._held_xcoms = self._held_xcoms, None
                    held.flush()

        def calculate_openlineage_events_completes(self, *args: Any, **kwargs: Any) -> bool:
            # Cosmos works out OpenLineage events from dbt's artifacts after every build (half a
            # second here) for Airflow's OpenLineage provider to send; without it none are read.
            if importlib.util.find_spec("airflow.providers.openlineage") is None:
                return False
            return super().calculate_openlineage_events_completes(*args, **kwargs)

        @property
        def _dbt_runner_callbacks(self) -> list | None:
            return self.__dict__.get("_dbt_runner_callbacks")

        @_dbt_runner_callbacks.setter
        def _dbt_runner_callbacks(self, callbacks: list | None) -> None:
            # Cosmos appends its callback here before each dbt invocation.
            self.__dict__["_dbt_runner_callbacks"] = callbacks and [
                _events_cosmos_reads(callback) for callback in callbacks
            ]

        def _make_parse_callable(self):
            parse = super()._make_parse_callable()

            def parse_holding_xcoms(line: str, extra_kwargs: Any) -> None:
                held = self._held_xcoms
                if held is not None and extra_kwargs and extra_kwargs.get("context") is not None:
                    extra_kwargs = held.parser_kwargs(extra_kwargs)
                parse(line, extra_kwargs)

            return parse_holding_xcoms

    return DbtProducerWatcherOperatorQuiet


def _events_cosmos_reads(callback: Any) -> Any:
    """``callback`` (a dbt event callback of Cosmos') called only with the events Cosmos reads."""
    from cosmos.operators._watcher.base import logger

    if getattr(callback, "_events_cosmos_reads", False) or logger.isEnabledFor(logging.DEBUG):
        return callback
    read = _debug_events_read()

    @functools.wraps(callback)
    def filtered(event: Any) -> None:
        if event.info.level != "debug" or event.info.name in read:
            callback(event)

    filtered._events_cosmos_reads = True
    return filtered


@functools.cache
def _debug_events_read() -> frozenset[str]:
    from cosmos.operators._watcher.base import _DBT_ERROR_EVENTS_TYPES

    return _DEBUG_EVENTS_READ | _DBT_ERROR_EVENTS_TYPES


# What a model task shows as its rendered fields (`lean_consumer_class`).
_SHOWN_FIELDS = ("model_unique_id", "compiled_sql")
# Stands for the producer's state until a model task needs it (see `lean_consumer_class`).
_PRODUCER_STATE_UNREAD = object()


@functools.cache
def lean_consumer_class(cosmos_class: type) -> type:
    """A Cosmos model, seed or snapshot task class that reports on its node *with its tests*, reads
    what it needs in one API round trip, and retries with a ``dbt build`` of its node.

    The model tasks start once the producer has finished, so on a first try the node's result is
    there and decides alone: the task reads the one XCom the producer stored for its node
    (`HeldXComs`, `NodeResults`) instead of Cosmos' three, does not ask for the producer's state,
    and reads dbt's start-up events only to log them at debug level. It fails if its node failed
    or any of the node's tests did not pass, naming them. Cosmos' separate task for a model's
    tests is not rendered: it doubled the number of tasks, each with Airflow's own round trips to
    its API, for a status the model's task can give.

    A retry, or a node without a result (the producer failed or was killed before reaching it),
    asks for the producer's state as in Cosmos and rebuilds its own node with its tests:
    ``dbt build --select <node>`` with the group's flags and those of the producer's build, all
    options of ``dbt build``.
    """

    class LeanConsumer(cosmos_class):
        base_cmd = ["build"]
        # Nothing a first try shows is a template: its node's id, and the SQL the producer compiled
        # for it, are stored as its rendered fields once it has read them (one round trip to the
        # API after it ran, not another before). The fields only dbt reads (environment,
        # variables, flags: some forty strings, each compiled as a Jinja template) are rendered by
        # a retry, which runs dbt, and not by every task of every run.
        template_fields: tuple[str, ...] = ()
        _dbt_template_fields = tuple(
            field for field in cosmos_class.template_fields if field not in _SHOWN_FIELDS
        )

        def _show_after_execution(self, *fields: str) -> None:
            self.template_fields = (*_SHOWN_FIELDS, *fields)
            self.overwrite_rtif_after_execution = True

        def _fallback_to_non_watcher_run(self, try_number: int, context: Any) -> bool:
            jinja_env = self.dag.get_template_env()
            self._do_render_template_fields(
                self, self._dbt_template_fields, context, jinja_env, set()
            )
            self._show_after_execution(*self._dbt_template_fields)
            return super()._fallback_to_non_watcher_run(try_number, context)

        def poke(self, context: Any) -> bool:
            self._show_after_execution()
            ti = context["ti"]
            if ti.try_number > 1:
                return super().poke(context)
            result = ti.xcom_pull(self.producer_task_id, key=node_result_key(self.model_unique_id))
            if result is None:
                return super().poke(context)
            reader = NodeResults(ti, self.producer_task_id, self.model_unique_id, result)
            done = super().poke({**context, "ti": reader, "task_instance": reader})
            if done:
                raise_for_tests(self.model_unique_id, result)
            return done

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

    LeanConsumer.__name__ = LeanConsumer.__qualname__ = f"{cosmos_class.__name__}Lean"
    return LeanConsumer


def raise_for_tests(unique_id: str, result: dict[str, Any]) -> None:
    """Fail a node's task when one of its tests did not pass (failed, erred, skipped or never
    ran), naming each with dbt's message."""
    from airflow.exceptions import AirflowException
    from cosmos.operators._watcher.state import is_dbt_node_status_success

    problems = []
    for test, event in sorted(result.get("tests", {}).items()):
        status = (event or {}).get("status")
        if is_dbt_node_status_success(status):
            continue
        name = test.split(".")[2] if test.count(".") >= 2 else test
        message = (event or {}).get("msg")
        problems.append(f"{name} ({status or 'did not run'}{f': {message}' if message else ''})")
    if problems:
        raise AirflowException(
            f"dbt tests of '{unique_id}' did not pass: {'; '.join(problems)}. A retry rebuilds "
            "the node and runs its tests again."
        )
