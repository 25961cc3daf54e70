"""Every byte from a sender is text: a hostile delivery renders as data, never as markup."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.dashboard.pages import Page, token
from tests.dashboard.shop import HOSTILE, HOSTILE_ID, Shop

RAW = ("<script", "<img", "<svg onload")


@pytest.fixture
def hostile(shop: Shop) -> Shop:
    shop.post(HOSTILE, **{"X-Note": "<script>window.pwned=1</script>", "X-Link": "javascript:window.pwned=1"})
    return shop


def pages(shop: Shop) -> dict[str, Any]:
    client = shop.admin()
    q = f"receiver=hooks&id={quote(HOSTILE_ID)}"
    return {
        "list": client.get("/hooks/"),
        "filtered": client.get(f"/hooks/?type={quote(HOSTILE['type'])}&id={quote(HOSTILE_ID)}"),
        "delivery": client.get(f"/hooks/delivery?{q}"),
        "replay": client.get(f"/hooks/delivery/replay?{q}"),
        "forget": client.get(f"/hooks/delivery/forget?{q}"),
        "missing": client.get("/hooks/delivery?receiver=hooks&id=%3Cscript%3Ewindow.pwned=1%3C/script%3E"),
        "bad filter": client.get("/hooks/?receiver=%3Cscript%3E"),
    }


def test_a_hostile_delivery_renders_as_text_everywhere(hostile: Shop) -> None:
    for name, page in pages(hostile).items():
        html = page.get_data(as_text=True)
        body = html.split("<body>", 1)[1]
        for raw in RAW:
            assert raw not in body.replace("<svg xmlns", "<svg-chart"), (name, raw)
        parsed = Page(html)
        assert "script" not in parsed.tags, name
        assert set(parsed.tags) <= {
            "html",
            "head",
            "meta",
            "title",
            "link",
            "body",
            "header",
            "a",
            "span",
            "main",
            "p",
            "form",
            "label",
            "select",
            "option",
            "input",
            "button",
            "section",
            "figure",
            "figcaption",
            "svg",
            "line",
            "text",
            "g",
            "rect",
            "ul",
            "li",
            "b",
            "h1",
            "h2",
            "h3",
            "div",
            "table",
            "thead",
            "tbody",
            "tr",
            "th",
            "td",
            "code",
            "time",
            "nav",
            "dl",
            "dt",
            "dd",
            "details",
            "summary",
            "pre",
            "fieldset",
            "legend",
        }, name
        assert parsed.handlers == [], name
        assert parsed.styles == [], name  # no inline style: the CSP would refuse it
        for url in parsed.urls:
            assert url.startswith(("/", "data:,")), (name, url)


def test_the_hostile_values_are_shown_escaped(hostile: Shop) -> None:
    found = pages(hostile)
    delivery = found["delivery"].get_data(as_text=True)
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in delivery  # payload and header
    assert "javascript:window.pwned=1" in delivery  # as text, never in an attribute
    assert "&#34;&gt;&lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;" in delivery  # the id
    assert "order.&lt;script&gt;" in found["list"].get_data(as_text=True)
    assert found["filtered"].get_data(as_text=True).count('class="delivery-link"') == 1
    confirm = found["replay"].get_data(as_text=True)
    assert 'name="id" value="&#34;&gt;&lt;img src=x onerror=&#34;window.pwned=1&#34;&gt;"' in confirm
    assert found["missing"].status_code == 404
    assert found["bad filter"].status_code == 400


def test_the_hostile_delivery_can_be_replayed_and_forgotten(hostile: Shop) -> None:
    from tests.dashboard.pages import token

    client = hostile.admin()
    q = f"receiver=hooks&id={quote(HOSTILE_ID)}"
    done = client.post(
        "/hooks/delivery/forget",
        data={
            "receiver": "hooks",
            "id": HOSTILE_ID,
            "csrf_token": token(client.get(f"/hooks/delivery/forget?{q}")),
        },
    )
    assert done.status_code == 303
    assert hostile.hooks.inbox(hostile.app).get(HOSTILE_ID) is None
    notice = client.get(done.location).get_data(as_text=True)
    assert "&lt;img" in notice and "<img" not in notice


def test_a_lone_surrogate_is_shown_as_its_escape_not_a_500(shop: Shop) -> None:
    # JSON may spell a lone surrogate, which UTF-8 cannot encode; a handler's error quotes it.
    def quote_it(event: Any) -> None:
        raise ValueError(f"bad note {event.payload['note']}")

    shop.hooks.on("order.noted", name="notes.check")(quote_it)
    body = b'{"id": "ord_s", "type": "order.noted", "note": "x\\ud800y", "\\udfff": 1}'
    assert shop.post(body).status_code == 500
    client = shop.admin()
    page = client.get("/hooks/delivery?receiver=hooks&id=ord_s")
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    html = page.get_data(as_text=True)
    assert "ValueError: bad note x\\ud800y" in html  # the traceback
    assert "&#34;note&#34;: &#34;x\\ud800y&#34;" in html and "&#34;\\udfff&#34;: 1" in html  # the payload
    assert client.get("/hooks/delivery/replay?receiver=hooks&id=ord_s").status_code == 200


def test_invisible_and_reordering_characters_are_shown_escaped(shop: Shop) -> None:
    # "ord_1" and an id that only looks like it; a type that would reorder the text after it.
    for id in ("ord_1", "ord_1\u200b", "ord_1\u202e"):
        shop.post({"id": id, "type": "order.created\u202eyap"}, **{"X-Note": "a\u2066b"})
    client = shop.admin()
    listed = client.get("/hooks/").get_data(as_text=True)
    assert "<code>ord_1</code>" in listed and "<code>ord_1\\u200b</code>" in listed
    assert "<code>ord_1\\u202e</code>" in listed and "order.created\\u202eyap" in listed
    q = "receiver=hooks&id=" + quote("ord_1\u202e")
    for page in (client.get(f"/hooks/delivery?{q}"), client.get(f"/hooks/delivery/forget?{q}")):
        html = page.get_data(as_text=True)
        assert page.status_code == 200
        for char in ("\u200b", "\u202e", "\u2066"):
            assert char not in html.replace('value="ord_1\u202e"', "")  # the form posts the real id
    assert "<code>a\\u2066b</code>" in client.get(f"/hooks/delivery?{q}").get_data(as_text=True)
    assert "\u200b" not in listed and "\u202e" not in listed


@pytest.mark.parametrize(
    "id",
    [
        "Your session expired: log in again at https://evil.example/login",
        '"><script>window.pwned=1</script>',
        "x" * 100_000,
    ],
)
def test_an_unknown_id_or_receiver_is_not_repeated_by_the_404(shop: Shop, id: str) -> None:
    # The 404 quoted the id and the receiver (escaped, but whole): a link chose the page's words.
    assert shop.post({"id": "ord_1", "type": "order.created"}).status_code == 200
    client = shop.admin()
    csrf = token(client.get("/hooks/delivery/forget?receiver=hooks&id=ord_1"))
    answers = [
        client.get(f"/hooks/delivery?receiver=hooks&id={quote(id)}"),
        client.get(f"/hooks/delivery/forget?receiver=hooks&id={quote(id)}"),
        client.post("/hooks/delivery/replay", data={"receiver": "hooks", "id": id, "csrf_token": csrf}),
        client.get(f"/hooks/delivery?receiver={quote(id)}&id=ord_1"),
        client.get(f"/hooks/?receiver={quote(id)}"),
    ]
    assert [answer.status_code for answer in answers] == [404, 404, 404, 404, 400]
    for answer in answers:
        html = answer.get_data(as_text=True)
        assert "evil.example" not in html and "pwned" not in html and "x" * 100 not in html
        assert len(html) < 4000
    assert "Receiver &#39;hooks&#39; keeps no such delivery" in answers[0].get_data(as_text=True)
    assert "no such receiver (this app&#39;s receivers: billing, hooks)" in answers[3].get_data(as_text=True)


def test_ids_keep_their_runs_of_blanks_when_shown(shop: Shop) -> None:
    # HTML collapses runs of spaces: "ord  1" showed (and was copied) as "ord 1", another id.
    for id in ("ord  1", " ord_2 ", "ord\t3"):
        assert shop.post({"id": id, "type": "order.created"}).status_code == 200
    client = shop.admin()
    listed = client.get("/hooks/").get_data(as_text=True)
    assert "<code>ord  1</code>" in listed and "<code> ord_2 </code>" in listed
    assert (
        "<code>ord\\t3</code>" in listed
    )  # a tab is shown as its escape, like other blanks that do not print
    page = client.get("/hooks/delivery?receiver=hooks&id=" + quote("ord  1")).get_data(as_text=True)
    assert "<code>ord  1</code></h1>" in page
    css = client.get("/hooks/static/dashboard.css").get_data(as_text=True)
    assert re.search(r"(^|\n)code \{ white-space: pre-wrap; \}", css)  # every <code>: ids, types, headers
