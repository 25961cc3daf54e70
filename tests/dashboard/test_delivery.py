"""A delivery's page, and replaying or forgetting it in two steps."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flask_hooks.inbox import Delivery
from tests.dashboard.pages import token
from tests.dashboard.shop import Shop

FAILING = {"id": "ord_7", "type": "order.paid", "customer": {"name": "Ada", "email": "ada@example.com"}}
PAGE = "/hooks/delivery?receiver=hooks&id=ord_7"


@pytest.fixture
def failed(shop: Shop) -> Shop:
    shop.post(FAILING, **{"X-Request-Id": "req-77"})
    return shop


def act(client: Any, action: str, id: str = "ord_7", receiver: str = "hooks", **form: Any) -> Any:
    confirm = client.get(f"/hooks/delivery/{action}?receiver={receiver}&id={id}")
    assert confirm.status_code == 200
    data = {"receiver": receiver, "id": id, "csrf_token": token(confirm), **form}
    return client.post(f"/hooks/delivery/{action}", data=data)


def test_the_page_shows_everything_an_operator_needs(failed: Shop) -> None:
    page = failed.admin().get(PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="status">failed<' in html
    assert "orders.save" in html and "billing.invoice" in html
    assert html.index("succeeded") < html.index(
        'billing.invoice</code></td><td><span class="status st-failed'
    )
    assert "Traceback (most recent call last)" in html
    assert "KeyError: &#39;customer&#39;" in html
    assert "X-Request-Id" in html and "req-77" in html
    pretty = json.dumps(FAILING, indent=2).replace('"', "&#34;")
    assert pretty in html
    assert 'href="/hooks/delivery/replay?receiver=hooks&amp;id=ord_7"' in html
    assert 'href="/hooks/delivery/forget?receiver=hooks&amp;id=ord_7"' in html


def test_the_confirmation_explains_and_offers_handlers(failed: Shop) -> None:
    page = failed.admin().get("/hooks/delivery/replay?receiver=hooks&id=ord_7")
    html = page.get_data(as_text=True)
    assert 'method="post" action="/hooks/delivery/replay"' in html
    assert 'name="handler" value="billing.invoice"' in html
    assert "Replay now" in html and "Cancel" in html


def test_replay_after_the_fix_turns_it_received(failed: Shop) -> None:
    failed.bug.fixed = True
    client = failed.admin()
    done = act(client, "replay")
    assert done.status_code == 303
    assert done.location.startswith(PAGE + "&done=replayed&result=received&subject=")
    page = client.get(done.location)
    assert b"Replayed: the delivery is now received." in page.data
    assert b'id="status">received<' in page.data
    assert failed.bug.calls == [("ord_7", False), ("ord_7", True)]
    assert b"replayed" in page.data  # the new attempt


def test_a_replay_that_fails_again_says_so(failed: Shop) -> None:
    client = failed.admin()
    done = act(client, "replay")
    assert "&done=replayed&result=failed&subject=" in done.location
    page = client.get(done.location)
    assert b"failed again" in page.data
    assert page.get_data(as_text=True).count("Traceback (most recent call last)") == 2


def test_replaying_chosen_handlers_reruns_exactly_those(failed: Shop) -> None:
    failed.bug.fixed = True
    client = failed.admin()
    act(client, "replay")
    assert act(client, "replay", handler=["billing.invoice"]).status_code == 303
    assert [c[1] for c in failed.bug.calls] == [False, True, True]
    unknown = act(client, "replay", handler=["nope"])
    assert unknown.status_code == 400
    assert b"no handler" in unknown.data


def test_a_replay_while_the_delivery_is_in_flight(failed: Shop) -> None:
    receiver = failed.hooks.receiver(failed.app)
    client = failed.admin()
    confirm = client.get("/hooks/delivery/replay?receiver=hooks&id=ord_7")
    claim = receiver.store.reopen(receiver.ns, "ord_7", now=receiver.now(), lease=60)  # a retry holds it
    assert claim.state == "new"
    done = client.post(
        "/hooks/delivery/replay", data={"receiver": "hooks", "id": "ord_7", "csrf_token": token(confirm)}
    )
    assert done.status_code == 303 and "&done=in-flight&subject=" in done.location
    assert b"Not replayed" in client.get(done.location).data
    assert failed.bug.calls == [("ord_7", False)]


def test_a_replay_that_lost_its_claim_says_its_handlers_ran(
    failed: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It said "Not replayed ... try again", though the handlers had run beside a retry's:
    # trying again ran them a third time.
    from flask_hooks import LeaseLost
    from flask_hooks.inbox import _TAKEN_OVER, Inbox

    def lost(self: Inbox, id: str, **kwargs: Any) -> Delivery:
        raise LeaseLost(_TAKEN_OVER)

    monkeypatch.setattr(Inbox, "replay", lost)
    done = act(failed.admin(), "replay")
    assert done.status_code == 409
    assert b"Replayed, but" in done.data and b"may have run twice" in done.data
    assert b"Not replayed" not in done.data


def test_forgetting_while_in_flight_is_refused(failed: Shop) -> None:
    receiver = failed.hooks.receiver(failed.app)
    client = failed.admin()
    confirm = client.get("/hooks/delivery/forget?receiver=hooks&id=ord_7")
    receiver.store.reopen(receiver.ns, "ord_7", now=receiver.now(), lease=60)  # a handler runs it
    done = client.post(
        "/hooks/delivery/forget", data={"receiver": "hooks", "id": "ord_7", "csrf_token": token(confirm)}
    )
    assert done.status_code == 303 and "&done=in-flight-forget&subject=" in done.location
    assert b"Not forgotten" in client.get(done.location).data
    assert failed.hooks.inbox(failed.app).get("ord_7") is not None


def test_replaying_one_handler_while_another_is_owed_says_so(failed: Shop) -> None:
    client = failed.admin()
    done = act(client, "replay", handler=["orders.save"])
    assert "&done=replayed&result=owed&subject=" in done.location
    page = client.get(done.location)
    assert b"the others are still owed" in page.data
    assert b'id="status">failed<' in page.data


def test_forget_removes_it_and_says_so(failed: Shop) -> None:
    client = failed.admin()
    page = client.get("/hooks/delivery/forget?receiver=hooks&id=ord_7")
    assert b"cannot be undone" in page.data
    done = act(client, "forget")
    assert done.status_code == 303
    assert done.location.startswith("/hooks/?done=forgotten&subject=")
    listing = client.get(done.location)
    assert b"Forgot &#39;ord_7&#39;" in listing.data
    # A link cannot make the page say anything else: the id is signed.
    made_up = client.get("/hooks/?done=forgotten&subject=Session+expired,+sign+in+at+evil.example")
    assert made_up.status_code == 200 and b"Forgot" not in made_up.data and b"evil" not in made_up.data
    assert failed.hooks.inbox(failed.app).get("ord_7") is None
    assert client.get(PAGE).status_code == 404
    # The sender's next redelivery is processed afresh.
    failed.bug.fixed = True
    assert failed.post(FAILING).get_json() == {"status": "received"}


@pytest.mark.parametrize(
    "path",
    [
        "/hooks/delivery?receiver=hooks&id=never",
        "/hooks/delivery?receiver=nobody&id=ord_7",
        "/hooks/delivery?id=ord_7",
        "/hooks/delivery/replay?receiver=hooks&id=never",
        "/hooks/delivery/forget?receiver=nobody&id=ord_7",
    ],
)
def test_unknown_deliveries_and_receivers_are_404s(failed: Shop, path: str) -> None:
    answer = failed.admin().get(path)
    assert answer.status_code == 404
    assert b"Back to the deliveries" in answer.data


def test_posting_for_an_unknown_delivery_is_a_404(failed: Shop) -> None:
    client = failed.admin()
    good = token(client.get("/hooks/delivery/replay?receiver=hooks&id=ord_7"))
    for action in ("replay", "forget"):
        answer = client.post(
            f"/hooks/delivery/{action}", data={"receiver": "hooks", "id": "x", "csrf_token": good}
        )
        assert answer.status_code == 404


@pytest.mark.parametrize(
    "query", ["done=replayed&result=<b>pwned</b>", "done=whatever", "done=replayed", "result=received"]
)
def test_only_known_messages_are_shown(failed: Shop, query: str) -> None:
    page = failed.admin().get(f"{PAGE}&{query}")
    assert page.status_code == 200
    assert b'id="notice"' not in page.data
    assert b"pwned" not in page.data


def test_a_link_cannot_claim_a_replay_that_did_not_happen(failed: Shop) -> None:
    client = failed.admin()
    for query in ("done=replayed&result=received", "done=replayed&result=owed", "done=in-flight"):
        page = client.get(f"{PAGE}&{query}")
        assert page.status_code == 200 and b'id="notice"' not in page.data, query
    # A real replay's link, with its words changed or moved to another delivery, says nothing either.
    failed.post({"id": "ord_8", "type": "order.paid"})
    done = act(client, "replay").location
    assert b"failed again" in client.get(done).data
    for made_up in (done.replace("result=failed", "result=received"), done.replace("ord_7", "ord_8")):
        page = client.get(made_up)
        assert page.status_code == 200 and b'id="notice"' not in page.data, made_up


def test_a_forgets_link_cannot_claim_another_outcome_nor_speak_for_another_delivery(failed: Shop) -> None:
    # The list page's link signed the id alone, and the delivery page's signed its words and
    # the id joined by spaces, with the same salt: "forgotten" edited to "gone" was believed,
    # and forgetting a delivery whose id was "replayed received ord_7" signed a notice that
    # ord_7 (still failed) had been replayed.
    client = failed.admin()
    forgotten = act(client, "forget").location
    page = client.get(forgotten.replace("done=forgotten", "done=gone"))
    assert page.status_code == 200 and b'id="notice"' not in page.data
    failed.post({"id": "replayed received ord_7", "type": "order.paid"})
    failed.post(FAILING)
    gone = act(client, "forget", id="replayed received ord_7").location
    subject = gone.partition("subject=")[2]
    page = client.get(f"{PAGE}&done=replayed&result=received&subject={subject}")
    assert page.status_code == 200 and b'id="notice"' not in page.data


def test_a_replays_notice_is_not_shown_on_another_receivers_delivery_of_the_same_id(failed: Shop) -> None:
    failed.post_billing({"id": "ord_7", "type": "invoice.paid"})
    client = failed.admin()
    done = act(client, "replay").location
    assert b"failed again" in client.get(done).data
    page = client.get(done.replace("receiver=hooks", "receiver=billing"))
    assert page.status_code == 200 and b'id="notice"' not in page.data


def _delivery(body: bytes, masked: tuple[str, ...] = ()) -> Delivery:
    return Delivery("d", "t", "received", body, (), 0.0, 0, {}, (), "hooks", masked)


def test_payload_text() -> None:
    from flask_hooks.dashboard.text import payload_text

    assert payload_text(_delivery(b'{"a":[1,2]}')).text == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert (
        payload_text(_delivery(b'{"secret":"s","b":1}', ("secret",))).text
        == '{\n  "secret": "[redacted]",\n  "b": 1\n}'
    )
    assert payload_text(_delivery(b"null")).text == "null"
    assert payload_text(_delivery(b"")).text == ""
    assert payload_text(_delivery(b"a=1&b=\xff")).text == "a=1&b=\ufffd"
    assert "not shown" in payload_text(_delivery(b"secret=s", ("secret",))).text
    assert not payload_text(_delivery(b'{"a":[1,2]}')).cut


def test_payload_text_stops_at_its_limit() -> None:
    from flask_hooks.dashboard.text import payload_text

    assert payload_text(_delivery(b"[1,2,3]"), limit=7) == ("[\n  1,\n", True)
    assert payload_text(_delivery(b"[1]"), limit=7) == ("[\n  1\n]", False)
    assert payload_text(_delivery("a=\u00e9\u00e9\u00e9".encode()), limit=3) == ("a=\u00e9", True)
    assert payload_text(_delivery(b"a=\xff\xff\xff"), limit=3) == ("a=\ufffd", True)


def test_a_payload_that_pretty_prints_huge_keeps_the_page_small(shop: Shop) -> None:
    # 40 kB of JSON nested 50 deep: pretty-printed, 20,000 lines indented 100 blanks each.
    nested = "[" * 50 + ",".join(["0"] * 20_000) + "]" * 50
    body = f'{{"id": "ord_big", "type": "order.created", "x": {nested}}}'.encode()
    assert shop.post(body).status_code == 200
    page = shop.admin().get("/hooks/delivery?receiver=hooks&id=ord_big")
    assert page.status_code == 200
    assert len(page.data) < 300 * 1024
    html = page.get_data(as_text=True)
    assert 'id="payload-cut"' in html and "Only the first 262,144" in html
    assert "&#34;id&#34;: &#34;ord_big&#34;" in html
