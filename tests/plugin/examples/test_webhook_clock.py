"""``webhook_clock``: the receivers' clock, frozen; advance it instead of sleeping."""


def test_the_dedupe_window_is_a_day(app, signed_delivery, webhook_clock):
    delivery = signed_delivery("order.paid")
    delivery.send()

    webhook_clock.advance(3600)
    assert delivery.resend().json == {"status": "duplicate"}

    webhook_clock.advance(86400)
    assert delivery.resend().json == {"status": "received"}
    assert app.config["FULFILLED"] == [delivery.id, delivery.id]


def test_deliveries_are_stamped_with_the_fake_time(signed_delivery, webhook_clock):
    webhook_clock.advance(30)

    delivery = signed_delivery("order.paid")

    assert delivery.timestamp == webhook_clock.now() == webhook_clock.start + 30
