"""The Airflow UI driven in a browser, as the on-call engineer uses it (a helper, not a test module).

`exercise_ui()` signs in, triggers an extract DAG from its Trigger form left as it is, watches the
run until the UI shows it finished, opens the transform DAG's graph for a successful run and reads a
dbt model task's compiled SQL under Rendered Templates. `log_in()` only signs in.

Written against the React UI of Airflow 3.3 (`airflow api-server`) with the simple auth manager.
Elements are found by the UI's own data-testid attributes where it has them, else by the titles and
aria-labels it gives its buttons (English locale), and pages by the UI's routes, which are stable
URLs: /dags/<dag_id>, /dags/<dag_id>/runs/<run_id>, .../tasks/<task_id>/rendered_templates.
Each step leaves a screenshot in build/screenshots/ (`browser.save_screenshot`); a failure says what
the UI showed instead and names its screenshot.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NoReturn
from urllib.parse import quote, unquote, urlsplit

import pytest
from browser import console_errors, save_screenshot, wait_for
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

RUN_DONE_STATES = ("success", "failed")
RUN_STATES = ("queued", "running", *RUN_DONE_STATES)

# The rendered field of a Cosmos dbt task that holds the model's SQL as dbt compiled it.
SQL_FIELD = "compiled_sql"

# The Rendered Templates view draws each value with a syntax highlighter that puts a line number in
# front of every line; the SQL is what remains once those are taken out.
RENDERED_FIELDS = """
return Array.from(document.querySelectorAll('[data-testid="main-content"] table tr')).map(row => {
  const cells = row.querySelectorAll(':scope > td');
  if (cells.length < 2) return null;
  const code = cells[1].querySelector('pre code') || cells[1].querySelector('pre');
  if (!code) return null;
  const copy = code.cloneNode(true);
  copy.querySelectorAll('.linenumber, .react-syntax-highlighter-line-number')
    .forEach(number => number.remove());
  return {name: cells[0].innerText.trim(), value: copy.textContent};
}).filter(field => field);
"""


def log_in(
    driver: WebDriver, base_url: str, username: str, password: str, screenshot: str = "airflow-ui"
) -> Path | None:
    """Sign in through the simple auth manager's login form; fail saying why if refused.

    Returns the screenshot of the filled-in form, or None when the browser was signed in already.
    """
    driver.get(base_url.rstrip("/") + "/")

    def form_or_home(d: WebDriver) -> str | None:
        if d.find_elements(By.NAME, "username") and d.find_elements(By.NAME, "password"):
            return "form"
        # A browser that already holds a token is let straight in.
        if "/auth/login" not in d.current_url and _visible(d, '[data-testid="nav-sidebar"]'):
            return "home"
        return None

    if wait_for(driver, form_or_home, "the Airflow login form or home page") == "home":
        return None
    # The simple auth manager warns on its login page all the time; only a new alert is a refusal.
    standing_alerts = set(_alert_texts(driver))
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    form = save_screenshot(driver, f"{screenshot}-01-login")
    driver.find_element(By.CSS_SELECTOR, 'form button[type="submit"]').click()

    def outcome(d: WebDriver) -> str | None:
        if "/auth/login" not in d.current_url and _visible(d, '[data-testid="nav-sidebar"]'):
            return "signed in"
        refusals = [text for text in _alert_texts(d) if text not in standing_alerts]
        return f"refused: {' / '.join(refusals)}".replace("\n", " ") if refusals else None

    result = wait_for(driver, outcome, f"{username} is signed in to Airflow or refused")
    if result != "signed in":
        _fail(driver, f"{screenshot}-login-refused", f"Airflow login as {username} {result}")
    return form


def exercise_ui(
    driver: WebDriver,
    base_url: str,
    username: str,
    password: str,
    extract_dag_id: str,
    transform_dag_id: str,
    model_task_id: str,
    timeout: float = 300,
    screenshot: str = "airflow-ui",
) -> dict:
    """Walk the issue's path through the Airflow UI; return what the UI showed along the way.

    Signs in; opens `extract_dag_id`'s page, its Trigger dialog, and submits the form untouched (the
    logical date it offers, every param at its default); follows the UI to the new run's page and
    reloads it until the run shows a final state, within `timeout` seconds of submitting the form,
    failing unless that is success. Then opens the newest successful run of `transform_dag_id` in its graph, clicks the
    node of `model_task_id` (a dbt model task inside its task group) and its Rendered Templates
    tab, and checks the compiled SQL is there: a select ... from, with no Jinja left in it.

    Returns run_id, state and seconds_to_finish of the triggered run; transform_run_id, task_id,
    sql_field, sql_length and sql (the compiled SQL); screenshots (paths, in order); console_errors
    (what the pages logged as errors, for the caller to judge).
    """
    base = base_url.rstrip("/")
    shots: list[Path] = []

    def shot(step: str) -> None:
        shots.append(save_screenshot(driver, f"{screenshot}-{step}"))

    shots.extend(filter(None, [log_in(driver, base, username, password, screenshot)]))
    shots.append(save_screenshot(driver, f"{screenshot}-02-signed-in"))

    run = trigger_and_watch(driver, base, extract_dag_id, timeout, screenshot)
    shots.extend(run.pop("screenshots"))

    transform_run_id = newest_successful_run(driver, base, transform_dag_id, screenshot)
    shot("06-transform-runs")
    open_graph(driver, base, transform_dag_id, transform_run_id, model_task_id, screenshot)
    shot("07-transform-graph")
    click_graph_node(driver, transform_dag_id, transform_run_id, model_task_id)
    shot("08-model-task")
    sql = rendered_sql(driver, transform_dag_id, transform_run_id, model_task_id, screenshot)
    shot("09-rendered-sql")

    return {
        **run,
        "transform_run_id": transform_run_id,
        "task_id": model_task_id,
        "sql_field": SQL_FIELD,
        "sql_length": len(sql),
        "sql": sql,
        "screenshots": shots,
        "console_errors": console_errors(driver),
    }


def trigger_and_watch(
    driver: WebDriver, base: str, dag_id: str, timeout: float, screenshot: str = "airflow-ui"
) -> dict:
    """Trigger `dag_id` from its page's form as offered and watch the run to its end.

    Returns run_id, state (success: anything else fails), seconds_to_finish and screenshots.
    """
    shots: list[Path] = []
    driver.get(f"{base}/dags/{quote(dag_id, safe='')}")
    trigger = wait_for(
        driver,
        lambda d: _dag_not_found(d) or _visible(d, '[data-testid="trigger-dag-button"]'),
        f"the page of DAG {dag_id} with its Trigger button",
    )
    if trigger == "not found":
        _fail(driver, f"{screenshot}-dag-not-found", f"the Airflow UI has no DAG {dag_id}")
    shots.append(save_screenshot(driver, f"{screenshot}-03-extract-dag"))
    trigger.click()

    # The dialog loads the DAG's params before it offers them; until then Trigger is disabled.
    submit = wait_for(
        driver,
        lambda d: _enabled(_visible(d, '[role="dialog"] [data-testid="trigger-dag-submit"]')),
        f"the Trigger dialog of {dag_id}, ready to submit",
    )
    shots.append(save_screenshot(driver, f"{screenshot}-04-trigger-form"))
    submit.click()
    triggered_at = time.monotonic()

    # On success the UI goes to the new run's page; on failure it shows an error toast instead.
    runs_path = f"/dags/{dag_id}/runs/"

    def run_page_or_error(d: WebDriver) -> str | None:
        path = unquote(urlsplit(d.current_url).path)
        if path.startswith(runs_path) and len(path) > len(runs_path):
            return "run page"
        errors = [t for t in _toast_texts(d) if "Failed" in t]
        return f"error: {' / '.join(errors)}" if errors else None

    outcome = wait_for(driver, run_page_or_error, f"the new run of {dag_id} after Trigger", 60)
    if outcome != "run page":
        _fail(driver, f"{screenshot}-trigger-failed", f"triggering {dag_id} failed: {outcome}")
    run_id = unquote(urlsplit(driver.current_url).path)[len(runs_path) :].split("/")[0]

    left = timeout - (time.monotonic() - triggered_at)
    state = watch_run(driver, dag_id, run_id, left, screenshot)
    took = round(time.monotonic() - triggered_at, 1)
    shots.append(save_screenshot(driver, f"{screenshot}-05-run-finished"))
    if state != "success":
        _fail(
            driver,
            f"{screenshot}-run-{state}",
            f"run {run_id} of {dag_id}, triggered from the UI, ended {state} after {took:.0f}s",
        )
    return {"run_id": run_id, "state": state, "seconds_to_finish": took, "screenshots": shots}


def watch_run(
    driver: WebDriver, dag_id: str, run_id: str, timeout: float, screenshot: str = "airflow-ui"
) -> str:
    """The run's state as its page shows it once final; fail naming the last state seen if none.

    The page polls the API itself while a run is going, but it is reloaded every so often too, so
    a page that stopped polling (a dropped request, a sleeping tab) cannot hide the end of the run.
    """
    deadline = time.monotonic() + max(timeout, 1)
    seen = "not shown"
    reloaded = time.monotonic()
    while time.monotonic() < deadline:
        seen = run_state(driver) or seen
        if seen in RUN_DONE_STATES:
            return seen
        if time.monotonic() - reloaded > 20:
            driver.refresh()
            reloaded = time.monotonic()
        time.sleep(2)
    _fail(
        driver,
        f"{screenshot}-run-timeout",
        f"run {run_id} of {dag_id} was still {seen} after {timeout:.0f}s (the UI never showed "
        f"{' or '.join(RUN_DONE_STATES)})",
    )


def run_state(driver: WebDriver) -> str | None:
    """The run state a run page's header shows, as Airflow names states; None before it shows."""
    try:
        badges = driver.find_elements(
            By.CSS_SELECTOR, '[data-testid="header-card"] [data-testid="state-badge"]'
        )
        # A badge says "Success" for success; the header has other badges too (a deadline's).
        shown = [badge.text.strip().lower().replace(" ", "_") for badge in badges]
    except StaleElementReferenceException:
        return None
    return next((state for state in shown if state in RUN_STATES), None)


def newest_successful_run(
    driver: WebDriver, base: str, dag_id: str, screenshot: str = "airflow-ui"
) -> str:
    """The id of the first run the DAG's Runs tab lists when filtered to successful runs."""
    driver.get(f"{base}/dags/{quote(dag_id, safe='')}/runs?state=success")

    def first_run(d: WebDriver) -> str | None:
        if _dag_not_found(d):
            return "not found"
        links = d.find_elements(By.CSS_SELECTOR, '[data-testid="table-cell-dag_run_id"] a')
        states = d.find_elements(By.CSS_SELECTOR, '[data-testid="table-cell-state"]')
        if links and states and states[0].text.strip().lower() == "success":
            return links[0].text.strip()
        return None

    run_id = wait_for(driver, first_run, f"a successful run of {dag_id} in its Runs tab", 60)
    if run_id == "not found":
        _fail(driver, f"{screenshot}-dag-not-found", f"the Airflow UI has no DAG {dag_id}")
    return run_id


def open_graph(
    driver: WebDriver,
    base: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    screenshot: str = "airflow-ui",
) -> None:
    """The run's page with the graph shown and every task group open, so `task_id` is drawn."""
    driver.get(f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}")
    # The toggle remembers the last view in the browser's storage; pressing Graph is idempotent.
    wait_for(
        driver,
        lambda d: _visible(d, 'button[aria-label^="Show Graph"]'),
        f"the Graph button on run {run_id} of {dag_id}",
    ).click()
    wait_for(
        driver,
        lambda d: _visible(d, '[data-testid="rf__wrapper"] .react-flow__node'),
        f"the graph of {dag_id} drawn",
    )
    expand = driver.find_elements(By.CSS_SELECTOR, '[data-testid="expand-all-button"]')
    if expand and expand[0].is_displayed():
        expand[0].click()
    try:
        WebDriverWait(driver, 30, poll_frequency=0.5).until(
            lambda d: _visible(d, _node_selector(task_id))
        )
    except TimeoutException:
        drawn = [
            node.get_attribute("data-id")
            for node in driver.find_elements(By.CSS_SELECTOR, ".react-flow__node")
        ]
        _fail(
            driver,
            f"{screenshot}-no-such-task",
            f"the graph of {dag_id} (run {run_id}, task groups expanded) has no task {task_id}; "
            f"it draws {len(drawn)} nodes: {', '.join(sorted(filter(None, drawn)))}",
        )


def click_graph_node(driver: WebDriver, dag_id: str, run_id: str, task_id: str) -> None:
    """Follow the task's node in the graph to its task instance page in that run."""
    link = driver.find_element(By.CSS_SELECTOR, f"{_node_selector(task_id)} a")
    try:
        link.click()
    except ElementClickInterceptedException:
        # The minimap or the zoom controls can overlap a node near the graph's edge.
        driver.execute_script("arguments[0].click()", link)
    task_path = f"/dags/{dag_id}/runs/{run_id}/tasks/{task_id}"
    wait_for(
        driver,
        lambda d: (
            unquote(urlsplit(d.current_url).path).rstrip("/") == task_path
            and _visible(d, 'a[title="Rendered Templates"]')
        ),
        f"the page of task {task_id} in run {run_id}",
    )


def rendered_sql(
    driver: WebDriver, dag_id: str, run_id: str, task_id: str, screenshot: str = "airflow-ui"
) -> str:
    """The compiled SQL the task's Rendered Templates tab shows; fail unless it is plain SQL."""
    driver.find_element(By.CSS_SELECTOR, 'a[title="Rendered Templates"]').click()
    # Beside the graph the task's panel is a narrow column; beside the grid it takes most of the
    # page, so the screenshot shows the SQL legibly.
    grid = _visible(driver, '[data-testid="grid-view-button"]')
    if grid is not None:
        grid.click()

    def fields(d: WebDriver) -> dict[str, str] | None:
        if not unquote(urlsplit(d.current_url).path).endswith("/rendered_templates"):
            return None
        shown = {field["name"]: field["value"] for field in d.execute_script(RENDERED_FIELDS)}
        return shown or None

    shown = wait_for(driver, fields, f"the Rendered Templates of {task_id} in run {run_id}", 60)
    # The panel scrolls on its own, not the page: bring the SQL's row into view for the screenshot.
    driver.execute_script(
        "const cell = Array.from(document.querySelectorAll('[data-testid=\"main-content\"] td'))"
        ".find(td => td.innerText.trim() === arguments[0]);"
        "if (cell) cell.scrollIntoView({block: 'start'});",
        SQL_FIELD,
    )
    sql = shown.get(SQL_FIELD)
    where = f"{task_id} in run {run_id} of {dag_id}"
    if sql is None:
        _fail(
            driver,
            f"{screenshot}-no-sql",
            f"Rendered Templates of {where} has no {SQL_FIELD}; it shows {sorted(shown)}",
        )
    problems = [
        problem
        for problem, found in (
            ("no select", not re.search(r"\bselect\b", sql, re.IGNORECASE)),
            ("no from", not re.search(r"\bfrom\b", sql, re.IGNORECASE)),
            ("Jinja left in it", "{{" in sql or "{%" in sql),
        )
        if found
    ]
    if problems:
        _fail(
            driver,
            f"{screenshot}-sql-not-compiled",
            f"{SQL_FIELD} of {where} is not compiled SQL ({', '.join(problems)}): {sql[:300]!r}",
        )
    return sql


def _node_selector(task_id: str) -> str:
    return f'[data-testid="rf__node-{task_id}"]'


def _visible(driver: WebDriver, css: str) -> WebElement | None:
    """The first displayed element `css` matches; the UI keeps closed dialogs in the DOM, hidden."""
    try:
        return next(
            (e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), None
        )
    except StaleElementReferenceException:
        return None


def _enabled(element: WebElement | None) -> WebElement | None:
    try:
        return element if element is not None and element.is_enabled() else None
    except StaleElementReferenceException:
        return None


def _dag_not_found(driver: WebDriver) -> str | None:
    headings = driver.find_elements(By.XPATH, "//*[normalize-space(text())='Dag Not Found']")
    return "not found" if any(h.is_displayed() for h in headings) else None


def _alert_texts(driver: WebDriver) -> list[str]:
    try:
        return [
            a.text.strip()
            for a in driver.find_elements(By.CSS_SELECTOR, ".chakra-alert__root")
            if a.is_displayed() and a.text.strip()
        ]
    except StaleElementReferenceException:
        return []


def _toast_texts(driver: WebDriver) -> list[str]:
    try:
        return [
            t.text.strip()
            for t in driver.find_elements(By.CSS_SELECTOR, '[data-scope="toast"][data-part="root"]')
            if t.text.strip()
        ]
    except StaleElementReferenceException:
        return []


def _fail(driver: WebDriver, name: str, message: str) -> NoReturn:
    shot = save_screenshot(driver, name)
    pytest.fail(f"{message} (on {driver.current_url}, screenshot {shot})", pytrace=False)
