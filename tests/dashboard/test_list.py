"""The list: every receiver's deliveries, newest first, filtered, keyset paged."""

from __future__ import annotations

from typing import Any

import pytest

from flask_hooks.core.errors import RecordUnreadable, StoreUnavailable
from flask_hooks.stores import MemoryStore
from tests.dashboard.pages import ids, older
from tests.dashboard.shop import OLD, Shop, seed_day


def all_pages(client: Any, url: str) -> list[list[str]]:
    pages = []
    next_url: str | None = url
    while next_url is not None:
        page = client.get(next_url)
        assert page.status_code == 200
        pages.append(ids(page))
        next_url = older(page)
        assert len(pages) < 50
    return pages


def test_newest_first_across_receivers_with_every_column(shop: Shop) -> None:
    shop.post({"id": "ord_1", "type": "order.created"})
    shop.clock.advance(60)
    shop.post_billing({"id": "inv_1", "type": "invoice.paid"})
    shop.clock.advance(60)
    shop.post({"id": "ord_2", "type": "order.paid"}, secret=OLD)  # fails, signed with the old secret
    page = shop.admin().get("/hooks/")
    assert ids(page) == ["ord_2", "inv_1", "ord_1"]
    html = page.get_data(as_text=True)
    row = html[html.index('<tr class="row-failed">') :].split("</tr>")[0]
    for cell in ("failed", "hooks", "order.paid", "ord_2", " ms<", ">1<", "billing.invoice"):
        assert cell in row, cell
    assert '<time datetime="' in row


def test_filters(shop: Shop) -> None:
    shop.post({"id": "ord_1", "type": "order.created"})
    shop.post({"id": "ord_2", "type": "order.paid"})
    shop.post({"id": "ord_3", "type": "order.created.late"})
    shop.post_billing({"id": "inv_1", "type": "invoice.paid"})
    shop.post_billing({"id": "ord_1", "type": "invoice.voided"})  # the same id in another receiver
    client = shop.admin()
    assert sorted(ids(client.get("/hooks/?receiver=billing"))) == ["inv_1", "ord_1"]
    assert ids(client.get("/hooks/?status=failed")) == ["ord_2"]
    assert sorted(ids(client.get("/hooks/?type=order.created"))) == ["ord_1", "ord_3"]
    assert sorted(ids(client.get("/hooks/?type=invoice.*"))) == ["inv_1", "ord_1"]
    assert ids(client.get("/hooks/?id=ord_1")) == ["ord_1", "ord_1"]
    assert ids(client.get("/hooks/?id=ord_1&receiver=hooks&status=received")) == ["ord_1"]
    assert ids(client.get("/hooks/?id=ord_2&status=received")) == []
    assert ids(client.get("/hooks/?receiver=&status=&type=&id=")) != []  # empty fields: no filter
    shop.post({"id": " ord_4\t", "type": "order.created"})  # a sender's id, blanks and all
    assert ids(client.get("/hooks/", query_string={"id": " ord_4\t"})) == [" ord_4\\t"]  # shown escaped
    assert ids(client.get("/hooks/", query_string={"id": "\t"})) == []  # not "no filter"
    empty = client.get("/hooks/?type=nothing.*")
    assert b"No deliveries match these filters" in empty.data
    form = empty.get_data(as_text=True)
    assert 'value="nothing.*"' in form


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("status=bogus", b"status must be one of"),
        ("receiver=nobody", b"no such receiver"),
        ("before=yesterday", b"must be a time"),
        ("before=nan", b"must be a time"),
        ("limit=many", b"must be a number"),
    ],
)
def test_bad_queries_are_400s(shop: Shop, query: str, reason: bytes) -> None:
    answer = shop.admin().get(f"/hooks/?{query}")
    assert answer.status_code == 400
    assert reason in answer.data


def test_paging_visits_every_delivery_once_in_order(shop: Shop) -> None:
    for i in range(7):
        shop.post({"id": f"ord_{i}", "type": "order.created"})
        shop.post_billing({"id": f"inv_{i}", "type": "invoice.paid"})
        shop.clock.advance(1)
    pages = all_pages(shop.admin(), "/hooks/?limit=4")
    assert [len(p) for p in pages] == [4, 4, 4, 2]
    flat = [i for p in pages for i in p]
    assert flat == [x for i in reversed(range(7)) for x in (f"ord_{i}", f"inv_{i}")]


def test_paging_through_ties_across_receivers(shop: Shop) -> None:
    """A frozen clock: every delivery has the same time; the same ids in both receivers."""
    for i in range(5):
        shop.post({"id": f"evt_{i}", "type": "order.created"})
        shop.post_billing({"id": f"evt_{i}", "type": "invoice.paid"})
    client = shop.admin()
    for limit in (1, 2, 3, 7):
        pages = all_pages(client, f"/hooks/?limit={limit}")
        flat = [i for p in pages for i in p]
        assert flat == [f"evt_{i}" for i in reversed(range(5)) for _ in range(2)], limit
        assert all(len(p) == limit for p in pages[:-1])


def test_paging_keeps_the_filters(shop: Shop) -> None:
    for i in range(5):
        shop.post({"id": f"ord_{i}", "type": "order.paid"})  # all fail
        shop.post({"id": f"ok_{i}", "type": "order.created"})
        shop.clock.advance(1)
    pages = all_pages(shop.admin(), "/hooks/?status=failed&limit=2")
    assert [i for p in pages for i in p] == [f"ord_{i}" for i in reversed(range(5))]


def test_a_seeded_day_pages_through_everything(shop: Shop) -> None:
    seed_day(shop)
    client = shop.admin()
    pages = all_pages(client, "/hooks/")
    flat = [i for p in pages for i in p]
    assert len(flat) == len(set(flat)) == 97
    assert b'rel="first"' in client.get(older(client.get("/hooks/")) or "").data


class FlakyStore(MemoryStore):
    down = False
    #: Reads refused while down: each one a store timeout waited out, when the store hangs.
    refused = 0

    #: A receiver (the end of its namespace) one of whose records cannot be read.
    damaged = ""

    def query(self, ns: str, **kwargs: Any) -> Any:
        self.check()
        if self.damaged and ns.endswith(self.damaged):
            raise RecordUnreadable()
        return super().query(ns, **kwargs)

    def deliveries(self, ns: str, **kwargs: Any) -> Any:
        self.check()
        if self.damaged and ns.endswith(self.damaged):
            raise RecordUnreadable()
        return super().deliveries(ns, **kwargs)

    def check(self) -> None:
        if self.down:
            self.refused += 1
            raise StoreUnavailable()


def test_a_store_that_is_down_is_said_not_hidden(tmp_path: Any) -> None:
    from tests.dashboard.shop import make_shop

    store = FlakyStore()
    shop = make_shop(str(tmp_path / "instance"), store=store)
    shop.post({"id": "ord_1", "type": "order.created"})
    store.down = True
    page = shop.admin().get("/hooks/")
    assert page.status_code == 200
    assert b"is not answering" in page.data
    assert ids(page) == []
    assert b"are kept yet" not in page.data and b"No deliveries could be read" in page.data
    # Both receivers share the store: one that hangs was waited for once per receiver and
    # section (four store timeouts for this page; 88 s for 11 receivers on a stopped Redis).
    assert store.refused == 1
    assert b"The delivery log of billing, hooks is not answering" in page.data


@pytest.mark.parametrize("damaged", [":billing", ":hooks"])
def test_one_damaged_record_hides_only_its_receiver(tmp_path: Any, damaged: str) -> None:
    """The store answered: a receiver sharing it is listed and charted all the same."""
    from tests.dashboard.shop import make_shop

    store = FlakyStore()
    shop = make_shop(str(tmp_path / "instance"), store=store)
    shop.post({"id": "ord_1", "type": "order.created"})
    shop.post_billing({"id": "inv_1", "type": "invoice.paid"})
    store.damaged = damaged
    page = shop.admin().get("/hooks/")
    healthy = "inv_1" if damaged == ":hooks" else "ord_1"
    assert ids(page) == [healthy]
    text = page.get_data(as_text=True)
    assert f"The store of {damaged[1:]} is not answering" in text
    assert f"The delivery log of {damaged[1:]} is not answering" in text
