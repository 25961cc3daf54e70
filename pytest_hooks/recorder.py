"""Record every flask_hooks signal for the length of one test.

Receivers are connected with blinker's ``connected_to``, so they are
disconnected when the block ends, even when the test fails; nothing is
left connected to the global signals.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any, NamedTuple

from blinker import ANY

from flask_hooks import signals

#: The signal attributes of :mod:`flask_hooks.signals`, in pipeline order.
SIGNALS = tuple(signals.by_name)


class Record(NamedTuple):
    """One signal as sent: its name (the attribute in ``flask_hooks.signals``) and kwargs."""

    name: str
    kwargs: dict[str, Any]

    @property
    def event_id(self) -> str | None:
        """The id of the delivery's event, once the signal carries one."""
        event = self.kwargs.get("event")
        return getattr(event, "id", None)


def succeeded(record: Record) -> tuple[str, ...]:
    """The handlers ``record`` says succeeded: all of a completion's, and those of a
    failed attempt that ran before the handler that raised (they are not run again)."""
    if record.name in ("event_handled", "handler_failed"):
        return tuple(record.kwargs.get("handlers", ()))
    return ()


def ran(record: Record) -> tuple[str, ...]:
    """The handlers ``record`` says ran: those that succeeded, and the one that raised."""
    if record.name == "handler_failed":
        return (*succeeded(record), record.kwargs["handler"])
    return succeeded(record)


def _describe(record: Record) -> str:
    kwargs = record.kwargs
    parts = [f"receiver={kwargs.get('receiver')!r}"]
    if record.event_id is not None:
        parts.append(f"id={record.event_id!r}")
    for key in ("reason", "handlers", "deferred", "handler", "in_flight", "error"):
        if key in kwargs and (key != "deferred" or kwargs[key]):  # most deliveries defer nothing
            parts.append(f"{key}={kwargs[key]!r}")
    return f"{record.name}({', '.join(parts)})"


def completions(records: list[Record]) -> list[Record]:
    """The deliveries' completions among ``records``: not a queue worker's
    ``event_handled`` for a handler that a completion deferred (before it or,
    with a queue that runs jobs inside ``enqueue``, after it)."""
    handled = [record for record in records if record.name == "event_handled"]
    queued: Counter[str] = Counter(name for record in handled for name in record.kwargs.get("deferred", ()))
    done = []
    for record in records:
        if record.name not in ("event_handled", "event_ignored"):
            continue
        handlers = tuple(record.kwargs.get("handlers", ()))
        worker = record.name == "event_handled" and not record.kwargs.get("deferred")
        if worker and handlers and all(queued[h] > 0 for h in handlers):
            queued.subtract(handlers)  # the worker ran what a request handed to its queue
            continue
        done.append(record)
    return done


class SignalRecorder:
    """A list of :class:`Record` plus assertions that read like the contract."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    @contextlib.contextmanager
    def recording(self, sender: Any = ANY) -> Iterator[SignalRecorder]:
        """Connect to every signal (from ``sender``, default any app) for the block."""
        with contextlib.ExitStack() as stack:
            for name, signal in signals.by_name.items():
                stack.enter_context(signal.connected_to(self._receiver(name), sender=sender))
            yield self

    def _receiver(self, name: str) -> Any:
        def receive(_sender: Any, **kwargs: Any) -> None:
            self.records.append(Record(name, kwargs))

        return receive

    # Reading ---------------------------------------------------------------

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Record:
        return self.records[index]

    @property
    def names(self) -> list[str]:
        """The name of every signal recorded, in order."""
        return [record.name for record in self.records]

    def of(self, name: str) -> list[dict[str, Any]]:
        """The kwargs of every ``name`` signal, in order."""
        if name not in SIGNALS:
            raise KeyError(f"no signal {name!r}; known: {', '.join(SIGNALS)}")
        return [record.kwargs for record in self.records if record.name == name]

    def for_id(self, id: str, *, receiver: str | None = None) -> list[Record]:
        """Every record about the delivery ``id`` (to the receiver named ``receiver``, if given)."""
        return [
            record
            for record in self.records
            if record.event_id == id and receiver in (None, record.kwargs.get("receiver"))
        ]

    def handler_calls(self, id: str | None = None) -> Counter[str]:
        """How often each handler ran (succeeded or raised), optionally for one id."""
        calls: Counter[str] = Counter()
        for record in self.records:
            if id is None or record.event_id == id:
                calls.update(ran(record))
        return calls

    def clear(self) -> None:
        """Forget what was recorded so far (recording goes on)."""
        self.records.clear()

    def timeline(self, records: list[Record] | None = None) -> str:
        """One line per record (default: all), as the assertions' failure messages show them."""
        shown = self.records if records is None else records
        return "\n".join(f"  {_describe(r)}" for r in shown) or "  (no signals)"

    # Assertions --------------------------------------------------------------

    def assert_processed_once(self, id: str, *, receiver: str | None = None) -> None:
        """The delivery ``id`` completed exactly once and no handler succeeded twice.

        Receivers keep their own ids: when ``id`` reached several, name the one
        meant with ``receiver``.
        """
        __tracebackhide__ = True  # a failure points at the test's line, not at this method
        mine = self.for_id(id, receiver=receiver)
        reached = sorted({str(r.kwargs.get("receiver")) for r in mine})
        if len(reached) > 1:
            raise AssertionError(
                f"delivery {id!r} reached the receivers {', '.join(map(repr, reached))}, each with"
                f" its own ids: pass receiver=<name>\nsignals:\n{self.timeline()}"
            )
        done = completions(mine)
        successes: Counter[str] = Counter()
        for record in mine:
            successes.update(succeeded(record))
        twice = sorted(name for name, count in successes.items() if count > 1)
        if len(done) == 1 and not twice:
            return
        if not done:
            problem = f"delivery {id!r} was never processed"
            if receiver is not None:
                problem += f" by receiver {receiver!r}"
            rejected = [r for r in self.records if r.name == "delivery_rejected"]
            if not mine and rejected:
                problem += f" ({len(rejected)} delivery(ies) rejected)"
        else:
            problem = f"delivery {id!r} was processed {len(done)} times"
            if twice:
                problem += f"; handler(s) run more than once: {', '.join(twice)}"
        raise AssertionError(f"{problem}\nsignals:\n{self.timeline()}")

    def assert_rejected(self, reason: str | None = None) -> None:
        """Some delivery was rejected, with ``reason`` in its reason when given."""
        __tracebackhide__ = True
        reasons = [str(kwargs.get("reason", "")) for kwargs in self.of("delivery_rejected")]
        if reason is None and reasons:
            return
        if reason is not None and any(reason.lower() in seen.lower() for seen in reasons):
            return
        wanted = "a rejection" if reason is None else f"a rejection with reason {reason!r}"
        seen = ", ".join(repr(r) for r in reasons) or "none"
        raise AssertionError(f"expected {wanted}; rejections seen: {seen}\nsignals:\n{self.timeline()}")

    def __repr__(self) -> str:
        return f"<SignalRecorder {len(self.records)} signal(s)>"
