"""Providers take any case-insensitive header mapping and only look names up."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from werkzeug.datastructures import EnvironHeaders
from werkzeug.test import EnvironBuilder

from flask_hooks.core.event import HeaderMap, Headers
from flask_hooks.core.providers import Outgoing, Parsed, Svix, Verified

from .samples import NOW, WHSEC, Case, case_id, cases

WIDE = (300.0, 300.0)


class GetOnly:
    """Headers that can only be looked up by name: iterating them raises ``TypeError``."""

    def __init__(self, items: Mapping[str, str]) -> None:
        self._items = {name.lower(): value for name, value in items.items()}

    def get(self, key: str, /) -> str | None:
        return self._items.get(key.lower())

    def __contains__(self, key: str, /) -> bool:
        return self.get(key) is not None


def environ_headers(sent: Mapping[str, str], body: bytes) -> EnvironHeaders:
    """What Flask's ``request.headers`` is: a lazy view of the WSGI environ."""
    return EnvironHeaders(EnvironBuilder(method="POST", headers=list(sent.items()), data=body).get_environ())


LOOKUPS: dict[str, Callable[[Mapping[str, str], bytes], HeaderMap]] = {
    "werkzeug-environ": environ_headers,
    "get-only": lambda sent, body: GetOnly(sent),
    "headers": lambda sent, body: Headers(sent),
}


def through(case: Case, lookup: str) -> tuple[Verified, Parsed]:
    keys = case.provider.keys(case.secrets)
    request = case.provider.sign(case.outgoing, keys[0])
    headers = LOOKUPS[lookup](request.headers, request.body)
    verified = case.provider.verify(headers, request.body, keys, now=NOW, tolerance=WIDE)
    return verified, case.provider.parse(headers, request.body)


@pytest.mark.parametrize("lookup", ["werkzeug-environ", "get-only"])
@pytest.mark.parametrize("case", cases(), ids=case_id)
def test_every_preset_verifies_and_parses_other_header_mappings(case: Case, lookup: str) -> None:
    verified, parsed = through(case, lookup)
    assert (parsed.id, parsed.type) == (case.id, case.type)
    assert (verified, parsed) == through(case, "headers")


def test_svix_names_win_over_webhook_names_in_werkzeug_headers() -> None:
    provider = Svix()
    keys = provider.keys([WHSEC])
    request = provider.sign(Outgoing("invoice.paid", {"amount": 1}, "msg_svix", NOW), keys[0])
    headers = environ_headers({**request.headers, "webhook-id": "msg_other"}, request.body)
    assert provider.verify(headers, request.body, keys, now=NOW, tolerance=WIDE).secret_index == 0
    assert provider.parse(headers, request.body).id == "msg_svix"
