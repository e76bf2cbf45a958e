"""The one error family of the service, one class per SODA/DALI error label.

SODA §5.2 / DALI §4.2: an error document is text/plain (or a VOTable) whose text
begins with the label. The HTTP status travels with the instance, so a missing job
is ``UsageError(..., status=404)`` and a phase conflict ``UsageError(..., status=403)``.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the family; label ``Error`` (a server fault unless said otherwise)."""

    label = "Error"
    status = 500

    def __init__(self, message: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}

    @property
    def text(self) -> str:
        return f"{self.label}: {self.message}"


class UsageError(ServiceError):
    """The request is wrong and will stay wrong if repeated (permanent)."""

    label = "UsageError"
    status = 400


class MultiValuedParamNotSupported(ServiceError):
    label = "MultiValuedParamNotSupported"
    status = 400


class AuthenticationError(ServiceError):
    label = "AuthenticationError"
    status = 401


class AuthorizationError(ServiceError):
    label = "AuthorizationError"
    status = 403


class ServiceUnavailable(ServiceError):
    """A transient failure: the same request may succeed later."""

    label = "ServiceUnavailable"
    status = 503


def not_found(message: str) -> UsageError:
    return UsageError(message, status=404)
