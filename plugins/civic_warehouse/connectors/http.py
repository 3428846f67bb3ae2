"""HTTP with the fault handling every city API needs: timeouts, backoff with jitter, Retry-After."""

from __future__ import annotations

import ipaddress
import logging
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import requests

from civic_warehouse.connectors.base import JsonArray, json_array_elements

log = logging.getLogger(__name__)

# 202 is Socrata's "still materializing, ask again"; the rest are transient server or network trouble.
RETRY_STATUSES = frozenset({202, 408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


class SourceError(RuntimeError):
    """A city API refused or failed a request; the message names the source, the URL and why."""

    def __init__(self, source: str, url: str, reason: str, status: int | None = None) -> None:
        self.source, self.url, self.reason, self.status = source, url, reason, status
        where = f"HTTP {status} from {url}" if status else url
        super().__init__(f"source {source!r}: {where}: {reason}")


class HttpClient:
    def __init__(
        self,
        source: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        max_total_seconds: float = 300.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_total_seconds = max_total_seconds
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", "civic-warehouse")
        self._sleep = sleep

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
        deadline = time.monotonic() + self.max_total_seconds
        headers = {**_LOOPBACK_HEADERS, **(headers or {})} if _is_loopback(url) else headers
        for attempt in range(1, self.max_attempts + 1):
            retry_after = None
            try:
                response = self.session.request(
                    method,
                    url,
                    params=params,
                    json=json_body,
                    headers=headers,
                    timeout=self.timeout,
                    # requests keeps custom headers (a Socrata app token) across a redirect to
                    # another host; a request carrying one follows none.
                    allow_redirects=not _carries_credentials(headers),
                )
                if response.status_code == 200:
                    return _decode(response, arrays_as_served)
            except UNREQUESTABLE_URL_ERRORS as err:
                # Subclasses of ValueError: without this they would be retried as bad bodies.
                raise SourceError(self.source, url, f"not a requestable URL: {err}") from err
            except TRANSIENT_ERRORS as err:
                reason = f"{type(err).__name__}: {err}"
            except ValueError as err:
                # A 200 whose body is cut off or not JSON: a dropped transfer, worth another try.
                reason = f"truncated or invalid JSON body: {err}"
            else:
                reason = error_message(response)
                if response.status_code not in RETRY_STATUSES:
                    raise SourceError(self.source, response.url, reason, response.status_code)
                retry_after = _retry_after_seconds(response)
                reason = f"HTTP {response.status_code}: {reason}"
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if attempt == self.max_attempts or time.monotonic() + delay > deadline:
                raise SourceError(
                    self.source, url, f"gave up after {attempt} attempt(s); last error: {reason}"
                )
            log.warning("source %s: %s; retry %d in %.1fs", self.source, reason, attempt, delay)
            self._sleep(delay)
        raise AssertionError("unreachable")

    def pause(self, attempt: int) -> None:
        """Wait before retry ``attempt``, for protocols whose errors arrive inside a 200."""
        self._sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        # "Full jitter": spreads retries of many workers instead of synchronising them.
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


UNREQUESTABLE_URL_ERRORS = (
    requests.exceptions.InvalidSchema,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidURL,
)


def _carries_credentials(headers: dict[str, str] | None) -> bool:
    return any(name.lower() in ("x-app-token", "authorization") for name in headers or {})


def _decode(response: requests.Response, arrays_as_served: bool) -> Any:
    # Both raise a ValueError on a body that is cut off or not JSON.
    if arrays_as_served:
        try:
            return JsonArray(response.content, len(_ARRAY_OF_RAW.decode(response.content)))
        except msgspec.ValidationError:
            pass  # valid JSON, not an array: the caller says what it expected
        except (msgspec.DecodeError, RecursionError) as err:
            if "truncated" in str(err):
                raise ValueError(str(err)) from err  # a cut-off transfer: worth another try
            # One element's bad text (a lone surrogate, nesting past the decoder's depth) in an
            # otherwise whole array: the loader rejects that element and lands the others.
            try:
                elements = json_array_elements(response.content)
            except ValueError as whole:
                raise ValueError(f"not a JSON array: {whole}") from err
            return JsonArray(response.content, len(elements))
    return response.json()


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
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    return describe_error_body(body)


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
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
