"""``webhook_sender``: replay a real sender's retry schedule on a fake clock."""


def test_processed_once_although_the_sender_tried_three_times(app, signed_delivery, webhook_sender):
    delivery = signed_delivery("order.paid")

    # The first response never reaches the sender (the handler did run),
    # the second attempt times out: the sender tries a third time.
    report = webhook_sender(schedule="archived").send(delivery, faults=["lost", "timeout"])

    assert report.delivered
    assert report.offsets == [0, 60, 300]
    assert report.handler_calls == {"shop.fulfil": 1}
    assert app.config["FULFILLED"] == [delivery.id]


def test_a_failing_handler_is_retried_until_it_succeeds(app, signed_delivery, webhook_sender):
    delivery = signed_delivery("order.paid")
    app.config["FAILURES"][delivery.id] = 2

    report = webhook_sender(schedule="archived").send(delivery)

    assert report.statuses == [500, 500, 200]
    assert report.handler_calls == {"shop.fulfil": 3}
    assert app.config["FULFILLED"] == [delivery.id]


def test_the_endpoint_is_disabled_after_five_failures(app, signed_delivery, webhook_sender):
    delivery = signed_delivery("order.paid")
    app.config["FAILURES"][delivery.id] = 99

    report = webhook_sender(schedule="archived").send(delivery)

    assert report.exhausted and report.disabled
    assert report.offsets == [0, 60, 300, 1800, 7200]
    assert app.config["FULFILLED"] == []


def test_a_schedule_of_your_own(signed_delivery, webhook_sender):
    sender = webhook_sender(schedule=[0, 10, 30], timeout=2)

    report = sender.send(signed_delivery("order.paid"), faults=[503, "reset"])

    assert [a.fault for a in report.attempts] == [503, "reset", None]
    assert report.offsets == [0, 10, 40]
    assert report.delivered
