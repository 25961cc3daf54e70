"""How each real sender retries, as data (the table is in ``sender.py``).

Every number comes from the sender's public documentation; where a sender publishes no
schedule the preset is an approximation and says so in ``note``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

MINUTE = 60
HOUR = 3600


@dataclasses.dataclass(frozen=True)
class Preset:
    """One sender's retry rules.

    ``schedule`` holds, per attempt, the delay after the previous failure
    (``from_start=False``, the usual reading) or the offset from the first
    attempt (``from_start=True``, the archived guide's "attempts at ...").
    """

    name: str
    schedule: tuple[float, ...]
    timeout: float
    from_start: bool = False
    #: A 3xx ends the delivery for good (Noukai records it as permanent).
    redirect_is_permanent: bool = False
    #: Redirects followed before the attempt fails (Slack: 2).
    follow_redirects: int = 0
    #: ``Retry-After`` moves the next attempt, clamped to [scheduled, 2x], as Svix's server does.
    honour_retry_after: bool = False
    #: Minimum delay after a 429 or a timeout (Svix's overload penalty).
    overload_penalty: float = 0.0
    #: Endpoint disabled once every attempt of the delivery failed.
    disable_when_exhausted: bool = False
    #: A 410 Gone disables the endpoint (Standard Webhooks).
    disable_on_410: bool = False
    #: Honour the ``webhook-delivery`` response header (Svix delivery control).
    delivery_control: bool = False
    #: Add ``X-Slack-Retry-Num``/``-Reason`` to retries; honour ``X-Slack-No-Retry``.
    slack_retries: bool = False
    #: Empty when every number is published; else what was approximated.
    note: str = ""

    @property
    def approximate(self) -> bool:
        return bool(self.note)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "archived",
            (0, 1 * MINUTE, 5 * MINUTE, 30 * MINUTE, 2 * HOUR),
            timeout=5,
            from_start=True,
            disable_when_exhausted=True,
        ),
        Preset(
            "noukai",
            (0, 1 * MINUTE, 5 * MINUTE, 30 * MINUTE, 2 * HOUR),
            timeout=20,
            redirect_is_permanent=True,
            note="Noukai's guide publishes no schedule or dead-letter rule: delays are an approximation",
        ),
        Preset(
            "standard-webhooks",
            (0, 5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 14 * HOUR, 20 * HOUR, 24 * HOUR),
            timeout=15,
            honour_retry_after=True,  # the spec: "should be taken into consideration"
            disable_on_410=True,
        ),
        Preset(
            "svix",
            (0, 5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR),
            timeout=15,
            honour_retry_after=True,
            overload_penalty=60,
            delivery_control=True,
        ),
        Preset(
            "stripe",
            (0, 1 * HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 16 * HOUR, 24 * HOUR, 17 * HOUR),
            timeout=20,
            note="Stripe retries for up to 3 days with exponential backoff; intervals and timeout"
            " are not published: doubling from 1 h, last attempt at 72 h, 20 s timeout",
        ),
        Preset(
            "shopify",
            (0, 2 * MINUTE, 4 * MINUTE, 8 * MINUTE, 16 * MINUTE, 32 * MINUTE, 64 * MINUTE, 114 * MINUTE),
            timeout=5,
            disable_when_exhausted=True,
            note="Shopify sends 8 tries over 4 hours, intervals not published:"
            " doubling from 2 min, last attempt at 4 h",
        ),
        Preset("slack", (0, 0, 1 * MINUTE, 5 * MINUTE), timeout=3, follow_redirects=2, slack_retries=True),
        Preset("github", (0,), timeout=10),
    )
}


def resolve(schedule: str | Sequence[float], timeout: float | None) -> Preset:
    """A preset by name, or a custom one from a list of delays."""
    if isinstance(schedule, str):
        try:
            preset = PRESETS[schedule.lower()]
        except KeyError:
            known = ", ".join(PRESETS)
            raise ValueError(
                f"unknown sender preset {schedule!r}; use one of {known} or a list of delays"
            ) from None
    else:
        delays = tuple(float(d) for d in schedule)
        if not delays or not all(0 <= d < math.inf for d in delays):  # NaN fails both
            raise ValueError(f"a schedule is a non-empty list of finite delays >= 0 s, not {schedule!r}")
        preset = Preset("custom", delays, timeout=10)
    if timeout is not None:
        if not 0 < timeout < math.inf:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        preset = dataclasses.replace(preset, timeout=float(timeout))
    return preset
