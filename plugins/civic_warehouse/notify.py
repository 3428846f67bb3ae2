"""Tell stewards when something failed, through the channel the deployment configured.

``CIVIC_ALERT_WEBHOOK_URL``: a JSON POST (Slack/Teams-compatible ``text`` plus structured fields).
``CIVIC_ALERT_EMAIL``: comma-separated addresses, sent through Airflow's SMTP connection
(``smtp_default``). Neither set: the alert is only logged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field

import requests

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    subject: str
    body: str
    departments: list[str] = field(default_factory=list)
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None

    @property
    def text(self) -> str:
        owners = f" (owner: {', '.join(self.departments)})" if self.departments else ""
        return f"{self.subject}{owners}\n{self.body}"


def send(alert: Alert) -> list[str]:
    """Deliver ``alert`` to every configured channel; returns the channels used."""
    used = []
    webhook = os.environ.get("CIVIC_ALERT_WEBHOOK_URL")
    if webhook:
        response = requests.post(webhook, json={"text": alert.text, **asdict(alert)}, timeout=10)
        response.raise_for_status()
        used.append("webhook")
    recipients = [
        a.strip() for a in os.environ.get("CIVIC_ALERT_EMAIL", "").split(",") if a.strip()
    ]
    if recipients:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook() as smtp:
            smtp.send_email_smtp(
                to=recipients, subject=alert.subject, html_content=f"<pre>{alert.text}</pre>"
            )
        used.append("email")
    log.error("alert: %s", alert.text)
    return used
