"""Sending one notice: an e-mail over SMTP, or a signed JSON POST to a webhook.

Each attempt is bounded by ``NoticeConfig.timeout_seconds`` per network operation (connect,
each read and write); a failure raises ``DeliveryFailed``, which says whether trying again
may help. Redirects are never followed. A webhook is sent to an address its host resolved
to and that passed ``uws.notices.check_webhook`` just before, with the URL's host name in
the Host header and in TLS (SNI and certificate check).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import smtplib
import socket
import ssl
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import urlsplit

from dali.errors import UsageError
from uws.notices import MAX_ADDRESSES, NoticeConfig, check_webhook

MAX_RESULT_LINKS = 100  # in one notice; the job's results page lists them all


@dataclass(frozen=True)
class Ending:
    """What a notice says about the job that ended."""

    job_id: str
    phase: str
    url: str
    run_id: str | None
    ended: str | None
    results: tuple[str, ...]
    error: str | None


class DeliveryFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


# --- e-mail -------------------------------------------------------------------------------

def mail_message(config: NoticeConfig, address: str, ending: Ending) -> EmailMessage:
    message = EmailMessage()
    message["From"] = config.mail_from
    message["To"] = address
    message["Subject"] = f"Job {ending.job_id} {ending.phase}"
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=config.mail_from.rpartition("@")[2] or None)
    lines = [f"Job {ending.job_id} ended {ending.phase}" + (f" at {ending.ended}." if ending.ended else "."),
             "", f"Job: {ending.url}"]
    if ending.run_id:
        lines.append(f"Run id: {ending.run_id}")
    if ending.error:
        lines += ["", f"Error: {ending.error}"]
    if ending.results:
        lines += ["", f"Results ({len(ending.results)}):"]
        lines += [f"  {link}" for link in ending.results[:MAX_RESULT_LINKS]]
        if len(ending.results) > MAX_RESULT_LINKS:
            lines.append(f"  ... and more at {ending.url}/results")
    lines += ["", "You asked for this notice when you created the job."]
    message.set_content("\n".join(lines) + "\n")
    return message


def send_mail(config: NoticeConfig, address: str, ending: Ending) -> None:
    message = mail_message(config, address, ending)
    timeout = config.timeout_seconds
    try:
        if config.smtp_security == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=timeout,
                                                  context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=timeout)
        with smtp:
            if config.smtp_security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password)
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        raise DeliveryFailed(f"the mail server refused {address}: {codes}",
                             permanent=all(500 <= c < 600 for c in codes)) from None
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryFailed(f"the mail server answered {exc.smtp_code} {text[:200]}",
                             permanent=500 <= exc.smtp_code < 600) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"mail server {config.smtp_host}:{config.smtp_port}: {exc}") from None


# --- webhooks -------------------------------------------------------------------------------

def webhook_body(ending: Ending, delivery: str, sent: str) -> bytes:
    """The JSON a webhook receives; the delivery id and time are inside what is signed."""
    fields = asdict(ending)
    fields["results"] = list(ending.results)
    return json.dumps({**fields, "delivery": delivery, "sent": sent}, separators=(",", ":")).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(config: NoticeConfig, body: bytes, delivery: str, sent: str) -> dict[str, str]:
    prefix = config.header_prefix
    return {"Content-Type": "application/json", "User-Agent": config.user_agent,
            f"{prefix}-Signature": signature(config.webhook_secret, body),
            f"{prefix}-Delivery": delivery, f"{prefix}-Timestamp": sent}


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to one checked address; Host is still the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to one checked address, with the URL's host for SNI and the certificate check."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def post_webhook(config: NoticeConfig, url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body``; the status of a 2xx answer, else DeliveryFailed."""
    try:
        addresses = check_webhook(url, config)  # resolved and checked again, now
    except UsageError as exc:
        raise DeliveryFailed(f"refused: {exc.text}", permanent=True) from None
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    failures = []
    for address in addresses[:MAX_ADDRESSES]:
        kind = _PinnedHTTPS if https else _PinnedHTTP
        conn = kind(parts.hostname or "", port, str(address), config.timeout_seconds)
        try:
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            response.read(65536)  # what the receiver says is not ours to keep
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{address}: {exc or type(exc).__name__}")
            continue
        finally:
            conn.close()
        if 200 <= status < 300:
            return status
        raise DeliveryFailed(f"{parts.hostname} answered {status}")
    raise DeliveryFailed(f"{parts.hostname}: " + "; ".join(failures))
