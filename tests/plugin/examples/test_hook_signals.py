"""``hook_signals``: every signal flask_hooks sent during the test."""


def test_a_duplicate_is_recorded_but_not_processed(signed_delivery, hook_signals):
    delivery = signed_delivery("order.paid")
    delivery.send()
    delivery.resend()

    hook_signals.assert_processed_once(delivery.id)
    assert hook_signals.names.count("delivery_duplicate") == 1


def test_a_tampered_delivery_is_rejected(signed_delivery, hook_signals):
    signed_delivery("order.paid").tampered().send()

    hook_signals.assert_rejected("signature")
    assert "event_handled" not in hook_signals.names


def test_each_record_is_a_name_and_its_arguments(signed_delivery, hook_signals):
    delivery = signed_delivery("order.paid")
    delivery.send()

    name, kwargs = hook_signals[-1]
    assert name == "event_handled"
    assert kwargs["event"].id == delivery.id
    assert kwargs["handlers"] == ("shop.fulfil",)
