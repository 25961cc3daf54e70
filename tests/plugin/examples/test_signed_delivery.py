"""``signed_delivery``: forge a correctly signed delivery and post its exact bytes."""

import pytest
from flask import Flask

from flask_hooks import Hooks


def test_paid_order_is_fulfilled(app, signed_delivery):
    delivery = signed_delivery("order.paid", {"data": {"amount": 1200}})

    response = delivery.send()

    assert response.status_code == 200
    assert response.json == {"status": "received"}
    assert app.config["FULFILLED"] == [delivery.id]


def test_a_retry_is_answered_without_running_again(app, signed_delivery):
    delivery = signed_delivery("order.paid")
    delivery.send()

    response = delivery.resend()

    assert response.json == {"status": "duplicate"}
    assert app.config["FULFILLED"] == [delivery.id]


def test_a_tampered_body_is_rejected(app, signed_delivery):
    response = signed_delivery("order.paid").tampered().send()

    assert response.status_code == 401
    assert app.config["FULFILLED"] == []


def test_the_generic_scheme_signs_no_timestamp(signed_delivery):
    with pytest.raises(ValueError, match="signs no timestamp"):
        signed_delivery("order.paid").stale()


class TestStripe:
    """A module or class can bring its own ``app``: here, a Stripe receiver."""

    @pytest.fixture
    def app(self, tmp_path):
        app = Flask("billing", instance_path=str(tmp_path))
        app.config.update(HOOKS_STRIPE_SECRET="whsec_test_secret", HOOKS_STRIPE_STORE="memory://")
        Hooks(app, name="stripe", provider="stripe")
        return app

    def test_a_replayed_old_delivery_is_rejected(self, signed_delivery):
        response = signed_delivery("invoice.paid", receiver="stripe").stale().send()

        assert response.status_code == 401
        assert b"timestamp" in response.data
