"""HTTP with the fault handling every city API needs: deadlines, backoff with jitter, Retry-After.

Time bounds everything, not counts: a client serves one extract, and the extract's budget
(``CW_EXTRACT_SECONDS``) runs from its first request across all its pages and retries. Within it,
each request must be answered whole within ``CW_REQUEST_SECONDS`` (the body is read as it arrives,
so a server that trickles bytes cannot stretch a per-read timeout forever), and a request failing
transiently is retried for up to ``CW_RETRY_SECONDS``, as long as a server's ``Retry-After`` asks.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit

import msgspec
import requests
import urllib3

from civic_warehouse import settings
from civic_warehouse.connectors.base import JsonArray, json_array_elements

log = logging.getLogger(__name__)

# 202 is Socrata's "still materializing, ask again"; the rest are transient server or network trouble.
RETRY_STATUSES = frozenset({202, 408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    # The body is read from urllib3 directly (see ``_read_body``), so its errors arrive unwrapped.
    urllib3.exceptions.HTTPError,
)

# A full read of NYC 311 (about 40 M rows, 50,000-row pages) takes a few hours; twice that leaves
# room for a slow portal, and an extract that is stuck still ends within a working day.
DEFAULT_EXTRACT_SECONDS = 6 * 3600
# A 50,000-row Socrata page (tens of MB) comes in well under a minute; five minutes covers a
# portal that is slow to start a big page, and nothing healthy trickles for longer.
DEFAULT_REQUEST_SECONDS = 300
# Portals throttle for minutes at a time (Socrata without an app token): waited out. A request
# refused for a quarter of an hour is an outage, better reported than waited on for hours.
DEFAULT_RETRY_SECONDS = 900
# A Retry-After beyond this is asked again after it rather than trusted: a misconfigured server
# can say a day.
RETRY_AFTER_CAP = 300.0
# Most a single read takes from the socket: large, so a fast server's body arrives in a few reads.
BODY_CHUNK = 1 << 20
# Attempts of one request, only as a backstop: time ends retries long before this.
MAX_ATTEMPTS = 1000
# A body cut off or not JSON is a dropped transfer a few times; every time, it is the server's bug,
# which no amount of waiting fixes.
BAD_BODY_ATTEMPTS = 5


def _seconds(variable: str, default: float) -> float:
    return settings.positive_number(variable, default, "seconds", kind=float)


class SourceError(RuntimeError):
    """A city API refused or failed a request; the message names the source, the URL and why."""

    def __init__(self, source: str, url: str, reason: str, status: int | None = None) -> None:
        self.source, self.url, self.reason, self.status = source, url, reason, status
        where = f"HTTP {status} from {url}" if status else url
        super().__init__(f"source {source!r}: {where}: {reason}")


class HttpClient:
    """Requests of one extract, within its time budget (see the module's docstring).

    ``timeout``: the most one connect or one read of the socket may wait. ``max_total_seconds``:
    the extract's budget (default ``CW_EXTRACT_SECONDS``); ``request_seconds``: one request's
    deadline, body included (``CW_REQUEST_SECONDS``); ``retry_seconds``: how long one request is
    retried (``CW_RETRY_SECONDS``). ``max_attempts`` only backstops the retries' time limits.
    """

    def __init__(
        self,
        source: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_total_seconds: float | None = None,
        request_seconds: float | None = None,
        retry_seconds: float | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_total_seconds = max_total_seconds or _seconds(
            "CW_EXTRACT_SECONDS", DEFAULT_EXTRACT_SECONDS
        )
        self.request_seconds = request_seconds or _seconds(
            "CW_REQUEST_SECONDS", DEFAULT_REQUEST_SECONDS
        )
        self.retry_seconds = retry_seconds or _seconds("CW_RETRY_SECONDS", DEFAULT_RETRY_SECONDS)
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "civic-warehouse")
        self._sleep = sleep
        self._extract_deadline: float | None = None

    def extract_deadline(self) -> float:
        """When the extract's budget runs out (``time.monotonic``); it starts at the first request,
        so a client made ahead of its extract loses nothing."""
        if self._extract_deadline is None:
            self._extract_deadline = time.monotonic() + self.max_total_seconds
        return self._extract_deadline

    def retries(self, url: str) -> Retries:
        """The retry budget of one request to ``url``, for callers that retry answers themselves."""
        return Retries(self, url)

    def get_json(
        self,
        url: str,
        params: dict[str, Any],
        headers: dict[str, str] | None = None,
        *,
        arrays_as_served: bool = False,
    ) -> Any:
        return self.request_json(
            "GET", url, params=params, headers=headers, arrays_as_served=arrays_as_served
        )

    def post_json(
        self,
        url: str,
        body: Any,
        headers: dict[str, str] | None = None,
        *,
        arrays_as_served: bool = False,
    ) -> Any:
        return self.request_json(
            "POST", url, json_body=body, headers=headers, arrays_as_served=arrays_as_served
        )

    def request_json(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        arrays_as_served: bool = False,
    ) -> Any:
        """The decoded body of a 200 answer, retrying transient failures within the time budget.

        ``arrays_as_served``: a body that is a JSON array comes back checked but unparsed, as a
        ``JsonArray`` (the loader hands it to PostgreSQL as is); any other body is decoded.
        """
        headers = {**_LOOPBACK_HEADERS, **(headers or {})} if _is_loopback(url) else headers
        retries = self.retries(url)
        bad_bodies = 0
        while True:
            retry_after = None
            try:
                status, body, response = self._exchange(method, url, params, json_body, headers)
                if status == 200:
                    return _decode(body, arrays_as_served)
            except UNREQUESTABLE_URL_ERRORS as err:
                # Subclasses of ValueError: without this they would be retried as bad bodies.
                raise SourceError(self.source, url, f"not a requestable URL: {err}") from err
            except TRANSIENT_ERRORS as err:
                reason = f"{type(err).__name__}: {err}"
            except ValueError as err:
                # A 200 whose body is cut off or not JSON: a dropped transfer, worth another try.
                reason = f"truncated or invalid JSON body: {err}"
                bad_bodies += 1
                if bad_bodies >= BAD_BODY_ATTEMPTS:
                    retries.give_up(reason)
            else:
                reason = _error_text(body, response)
                if status not in RETRY_STATUSES:
                    raise SourceError(self.source, response.url, reason, status)
                retry_after = _retry_after_seconds(response)
                reason = f"HTTP {status}: {reason}"
            retries.wait(reason, retry_after)

    def _exchange(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        json_body: Any,
        headers: dict[str, str] | None,
    ) -> tuple[int, bytes, requests.Response]:
        """One request, answered whole by the earlier of its deadline and the extract's."""
        started = time.monotonic()
        extract_deadline = self.extract_deadline()
        deadline = min(started + self.request_seconds, extract_deadline)
        if deadline <= started:
            raise self._overdue(url, started, extract_deadline, 0)
        # No single wait may outlast the deadline: a silent server is then caught by the read.
        wait = min(self.timeout, deadline - started)
        response = self.session.request(
            method,
            url,
            params=params,
            json=json_body,
            headers=headers,
            timeout=(wait, wait),
            stream=True,
            # requests keeps custom headers (a Socrata app token) across a redirect to another
            # host; a request carrying one follows none.
            allow_redirects=not _carries_credentials(headers),
        )
        try:
            chunks, received = [], 0
            while chunk := response.raw.read1(BODY_CHUNK, decode_content=True):
                chunks.append(chunk)
                received += len(chunk)
                if time.monotonic() > deadline:
                    raise self._overdue(response.url, started, extract_deadline, received)
            return response.status_code, b"".join(chunks), response
        except TRANSIENT_ERRORS:
            if time.monotonic() >= deadline:
                # A read timed out because the deadline was near: that is the deadline passing.
                raise self._overdue(response.url, started, extract_deadline, received) from None
            raise
        finally:
            response.close()

    def _overdue(
        self, url: str, started: float, extract_deadline: float, received: int
    ) -> SourceError:
        took = time.monotonic() - started
        if extract_deadline <= started + self.request_seconds:
            limit = (
                f"the extract's time budget of {self.max_total_seconds:g} s "
                "(CW_EXTRACT_SECONDS) ran out"
            )
        else:
            limit = f"no whole answer within {self.request_seconds:g} s (CW_REQUEST_SECONDS)"
        return SourceError(
            self.source, url, f"{limit}; {received} bytes of the body after {took:.1f} s"
        )

    def _backoff(self, attempt: int) -> float:
        # "Full jitter": spreads retries of many workers instead of synchronising them.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


class Retries:
    """One request's retries: each waits as the server asks (``Retry-After``) or backs off, and
    they end when the request's retry time or the extract's budget would be passed."""

    def __init__(self, client: HttpClient, url: str) -> None:
        self.client = client
        self.url = url
        self.attempt = 0
        self.started = time.monotonic()
        self._until = min(self.started + client.retry_seconds, client.extract_deadline())

    def wait(self, reason: str, retry_after: float | None = None) -> None:
        """Sleep before the next attempt, or raise a ``SourceError`` saying why there is none."""
        self.attempt += 1
        client = self.client
        if retry_after is not None:
            delay = min(retry_after, RETRY_AFTER_CAP)
        else:
            delay = client._backoff(self.attempt)
        left = self._until - time.monotonic()
        why = None
        if self.attempt >= client.max_attempts:
            why = ""
        elif delay > left:
            if self._until < self.started + client.retry_seconds:
                why = (
                    f", the extract's time budget of {client.max_total_seconds:g} s "
                    "(CW_EXTRACT_SECONDS) spent"
                )
            else:
                why = f", {client.retry_seconds:g} s of retries (CW_RETRY_SECONDS) spent"
            if retry_after is not None:
                why += f" (the server asked to wait {retry_after:g} s)"
        if why is not None:
            self._raise(reason, why)
        log.warning("source %s: %s; retry %d in %.1fs", client.source, reason, self.attempt, delay)
        client._sleep(delay)

    def give_up(self, reason: str) -> NoReturn:
        """End the retries after the attempt that just failed with ``reason``."""
        self.attempt += 1
        self._raise(reason, "")

    def _raise(self, reason: str, why: str) -> NoReturn:
        took = time.monotonic() - self.started
        raise SourceError(
            self.client.source,
            self.url,
            f"gave up after {self.attempt} attempt(s) in {took:.1f} s{why}; last error: {reason}",
        )


UNREQUESTABLE_URL_ERRORS = (
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidURL,
)


def _carries_credentials(headers: dict[str, str] | None) -> bool:
    return any(name.lower() in ("x-app-token", "authorization") for name in headers or {})


def _decode(body: bytes, arrays_as_served: bool) -> Any:
    # Both raise a ValueError on a body that is cut off or not JSON.
    if arrays_as_served:
        try:
            return JsonArray(body, len(_ARRAY_OF_RAW.decode(body)))
        except msgspec.ValidationError:
            pass  # valid JSON, not an array: the caller says what it expected
        except (msgspec.DecodeError, RecursionError) as err:
            if "truncated" in str(err):
                raise ValueError(str(err)) from err  # a cut-off transfer: worth another try
            # One element's bad text (a lone surrogate, nesting past the decoder's depth) in an
            # otherwise whole array: the loader rejects that element and lands the others.
            try:
                elements = json_array_elements(body)
            except ValueError as whole:
                raise ValueError(f"not a JSON array: {whole}") from err
            return JsonArray(body, len(elements))
    return json.loads(body)


# Decodes only the outer array: every element is checked to be well-formed JSON, none is parsed.
_ARRAY_OF_RAW = msgspec.json.Decoder(list[msgspec.Raw])
# Compressing costs both ends CPU and saves nothing when the server is on this machine.
_LOOPBACK_HEADERS = {"Accept-Encoding": "identity"}


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def error_message(response: requests.Response) -> str:
    """The useful part of an error body, whichever protocol's shape the server used."""
    return _error_text(response.content, response)


def _error_text(body: bytes, response: requests.Response) -> str:
    try:
        decoded = json.loads(body)
    except ValueError:
        return body[:500].decode("utf-8", "replace") or response.reason
    return describe_error_body(decoded)


def describe_error_body(body: Any) -> str:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        # Open311: [{"code": 403, "description": "..."}, ...]
        return "; ".join(
            " ".join(str(e[k]) for k in ("code", "description") if e.get(k) is not None)
            for e in body
        )
    if isinstance(body, dict):
        error = body.get("error")
        if body.get("success") is False:
            # CKAN: {"success": false, "error": {"__type", "message" or <field>: [complaints]}}
            if not isinstance(error, dict):
                return f"CKAN error: {error!r}"
            details = "; ".join(
                f"{key}: {'; '.join(map(str, value)) if isinstance(value, list) else value}"
                for key, value in error.items()
                if key != "__type"
            )
            return f"CKAN {error.get('__type', 'error')}" + (f": {details}" if details else "")
        # Socrata uses "errorCode" for query errors and "code" for others: read both.
        code = body.get("errorCode") or body.get("code")
        message = body.get("message") or error
        return " ".join(str(part) for part in (code, message) if part) or str(body)[:500]
    return str(body)[:500]


def _retry_after_seconds(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds, given as seconds or as an HTTP date; None if absent or unreadable."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110: an HTTP date is in GMT
        return None
    return max(0.0, when.timestamp() - time.time())
