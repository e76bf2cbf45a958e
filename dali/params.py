"""Request parameters as DALI reads them (DALI 1.1 §3.1-3.2).

Names are case-insensitive and values case-sensitive; an empty value is the same as an
absent parameter; a single-valued parameter given twice is an error.
"""

from __future__ import annotations

from dali.errors import MultiValuedParamNotSupported, UsageError
from dali.votable import NOT_XML  # such a value could not be shown in a job document

Params = list[tuple[str, str]]


class RequestParams:
    """Parameters of one request: names case-insensitive, values case-sensitive; ``files``:
    the uploaded files of a multipart body by field name (DALI 1.1 §3.4.5), where the
    route reads them."""

    def __init__(self, pairs: Params, files: dict[str, bytes] | None = None) -> None:
        self.pairs = pairs
        self.files = files or {}

    def all(self, name: str) -> list[str]:
        upper = name.upper()
        return [v for n, v in self.pairs if n.upper() == upper]

    def single(self, name: str) -> str | None:
        values = self.all(name)
        if len(values) > 1:
            raise MultiValuedParamNotSupported(f"{name.upper()} was given {len(values)} times; it takes one value")
        return values[0] if values else None

    def without(self, names: frozenset[str]) -> Params:
        return [(n, v) for n, v in self.pairs if n.upper() not in names]


def clean(pairs: Params) -> RequestParams:
    """Drop empty values (DALI: the same as absent); refuse characters XML cannot carry."""
    kept: Params = []
    for name, value in pairs:
        if NOT_XML.search(name) or NOT_XML.search(value):
            raise UsageError(f"parameter {name[:40]!r} contains control characters")
        if value != "":
            kept.append((name, value))
    return RequestParams(kept)


def parse_int(name: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise UsageError(f"{name} must be an integer, not {value!r}") from None
