"""Notices when a job ends, asked for with the NOTIFY parameter of a job's creation: what a
target may be and which targets the service allows.

    NOTIFY=mailto:someone@example.org    an e-mail through the service's SMTP server
    NOTIFY=https://example.org/hook      a JSON POST signed with HMAC-SHA256

Repeatable up to ``NoticeConfig.max_targets``. A webhook's host is resolved when the job is
created and again at each delivery; it is refused when any of its addresses is not a
public one (loopback, private, link-local, multicast, reserved, unspecified; IPv4 inside
IPv6 too), unless the service allows private targets. The delivery connects to an address
that passed the check (``uws.delivery``), so a name that resolves elsewhere the second
time (DNS rebinding) reaches nothing it was not allowed to.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from dali.errors import UsageError

NAME = "NOTIFY"
MAX_TARGET_LENGTH = 2048
MAX_ADDRESSES = 3  # of a webhook host's addresses, tried in turn by one attempt

# One address, RFC 5322 dot-atom local part and a DNS domain of two labels or more.
_MAILBOX = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


@dataclass(frozen=True)
class NoticeConfig:
    """What the application allows (built from its settings; durations in seconds)."""

    max_targets: int                     # NOTIFY values per job; 0: NOTIFY refused
    smtp_host: str                       # empty: no e-mail
    smtp_port: int
    smtp_security: str                   # "none", "starttls" or "ssl"
    smtp_user: str                       # empty: no login
    smtp_password: str
    mail_from: str
    mail_domains: tuple[str, ...]        # empty: any domain
    webhook_secret: str                  # empty: no webhooks (they are always signed)
    webhook_hosts: tuple[str, ...]       # empty: any public host
    allow_http: bool
    allow_private_targets: bool
    anonymous: str                       # what anonymous callers may ask: "off", "webhook", "all"
    timeout_seconds: float               # one delivery attempt
    retry_delays_seconds: tuple[float, ...]  # before the 2nd, 3rd... attempt; the last repeats
    max_attempts: int
    public_url: str                      # empty: job links follow the creating request
    header_prefix: str                   # names the webhook headers: <prefix>-Signature...
    user_agent: str

    @property
    def mail_enabled(self) -> bool:
        return self.max_targets > 0 and bool(self.smtp_host and self.mail_from)

    @property
    def webhooks_enabled(self) -> bool:
        return self.max_targets > 0 and bool(self.webhook_secret)

    def retry_delay(self, attempt: int) -> float:
        """Seconds between attempt ``attempt`` (1 = the first) and the next."""
        delays = self.retry_delays_seconds or (60.0,)
        return delays[min(attempt, len(delays)) - 1]

    @property
    def lost_after_seconds(self) -> float:
        """An attempt not made this long after it was due has lost its message (one
        attempt takes a few timeouts per address, at most MAX_ADDRESSES of them)."""
        return max(60.0, 4 * MAX_ADDRESSES * self.timeout_seconds)


def parse_targets(values: Sequence[str], config: NoticeConfig | None, anonymous: bool,
                  resolve: Resolver | None = None) -> list[str]:
    """The NOTIFY values of a job, checked (UsageError otherwise), duplicates dropped."""
    if not values:
        return []
    if config is None or config.max_targets == 0 or not (config.mail_enabled or config.webhooks_enabled):
        raise UsageError(f"{NAME}: this service sends no notifications")
    targets = list(dict.fromkeys(v.strip() for v in values))
    if len(targets) > config.max_targets:
        raise UsageError(f"{NAME} was given {len(targets)} times; a job may have at most "
                         f"{config.max_targets} notification targets")
    for target in targets:
        check_target(target, config, anonymous, resolve)
    return targets


def check_target(target: str, config: NoticeConfig, anonymous: bool,
                 resolve: Resolver | None = None) -> list[Address]:
    """Raise UsageError unless ``target`` is allowed; a webhook's checked addresses."""
    if len(target) > MAX_TARGET_LENGTH:
        raise UsageError(f"{NAME}: a target has at most {MAX_TARGET_LENGTH} characters")
    scheme = target.split(":", 1)[0].lower() if ":" in target else ""
    if scheme == "mailto":
        if anonymous and config.anonymous != "all":
            raise UsageError(f"{NAME}: log in to be notified by e-mail")
        check_mailbox(target[len("mailto:"):], config)
        return []
    if scheme in ("https", "http"):
        if anonymous and config.anonymous == "off":
            raise UsageError(f"{NAME}: log in to be notified")
        return check_webhook(target, config, resolve)
    raise UsageError(f"{NAME} must be mailto:<address> or an https:// URL, not {target[:80]!r}")


def check_mailbox(address: str, config: NoticeConfig) -> str:
    if not config.mail_enabled:
        raise UsageError(f"{NAME}: this service sends no e-mail")
    match = _MAILBOX.match(address)
    if match is None or len(address) > 254:
        raise UsageError(f"{NAME}: {address[:80]!r} is not one e-mail address (mailto:name@example.org)")
    domain = match.group(1).lower()
    allowed = [d.lower().lstrip(".") for d in config.mail_domains]
    if allowed and not any(domain == d or domain.endswith("." + d) for d in allowed):
        raise UsageError(f"{NAME}: e-mail goes only to addresses at {', '.join(allowed)}")
    return address


def check_webhook(url: str, config: NoticeConfig, resolve: Resolver | None = None) -> list[Address]:
    """The addresses a webhook URL may be delivered to; UsageError when it may not be."""
    if not config.webhooks_enabled:
        raise UsageError(f"{NAME}: this service sends no webhooks")
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"{NAME}: {url[:80]!r} is not a URL") from None
    if parts.scheme == "http" and not config.allow_http:
        raise UsageError(f"{NAME}: webhooks must use https://")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"{NAME}: {url[:80]!r} is not an https:// URL with a host")
    if parts.username is not None or parts.password is not None or parts.fragment:
        raise UsageError(f"{NAME}: a webhook URL may carry no user, password or fragment")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise UsageError(f"{NAME}: a webhook URL may not contain spaces or control characters")
    host = parts.hostname.lower().rstrip(".")
    allowed = [h.lower().rstrip(".") for h in config.webhook_hosts]
    if allowed and host not in allowed:
        raise UsageError(f"{NAME}: webhooks go only to {', '.join(allowed)}")
    addresses = _resolved(host, port, resolve or resolve_host)
    if not config.allow_private_targets:
        for address in addresses:
            if not is_public(address):
                raise UsageError(f"{NAME}: {host} is not a public address ({address}); "
                                 f"webhooks go to public hosts only")
    return addresses


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address is itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _resolved(host: str, port: int, resolve: Resolver) -> list[Address]:
    try:
        found = resolve(host, port)
    except (OSError, UnicodeError):
        found = []
    addresses = []
    for text in found:
        try:
            addresses.append(ipaddress.ip_address(text.split("%", 1)[0]))  # drop an IPv6 zone
        except ValueError:
            continue
    if not addresses:
        raise UsageError(f"{NAME}: the host {host!r} does not resolve")
    return addresses


def is_public(address: Address) -> bool:
    """A globally reachable unicast address; IPv4 carried in IPv6 is judged as IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)  # the connection goes to that IPv4 address
        embedded = address.sixtofour or (address.teredo or (None, None))[1]
        if address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not is_public(embedded):
            return False
    return address.is_global and not (
        address.is_loopback or address.is_private or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: an IPv4 address in its last 32 bits
