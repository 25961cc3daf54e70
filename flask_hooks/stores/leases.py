"""Keep a running handler's lease alive, so a slow handler is not run twice.

A claim holds a delivery for ``lease`` seconds. A handler that runs longer
would lose it: a copy arriving after the lease ran out is claimed again
and runs the handler in parallel. While a handler runs, its claim sits in
a :class:`LeaseKeeper`; one daemon thread per process renews every claim
that has been held for a third of its lease, so only a crash (or a frozen
process, whose thread is frozen too) lets the lease run out, or one C call
that holds the GIL for longer than the lease (the thread cannot run).

Holding a claim is a dictionary insert: a handler that finishes within a
third of its lease costs no system call and no store write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..core.errors import LeaseLost, StoreUnavailable

log = logging.getLogger("flask_hooks")


class Renews(Protocol):
    """What the keeper needs of a store: ``renew`` (a :class:`DedupeStore` has it)."""

    def renew(self, ns: str, id: str, token: str, *, now: float, lease: float) -> None: ...


#: A claim is renewed once it has been held for this share of its lease.
RENEW_AFTER = 1 / 3


class Held:
    """One claim kept alive while its handlers run."""

    __slots__ = ("after", "clock", "id", "lease", "lost", "ns", "renewed_at", "store", "thread", "token")

    def __init__(
        self,
        store: Renews,
        ns: str,
        id: str,
        token: str,
        lease: float,
        clock: Callable[[], float],
        held_since: float,
    ) -> None:
        self.store, self.ns, self.id, self.token = store, ns, id, token
        self.lease, self.clock = lease, clock
        #: When the lease was last taken or renewed, on the keeper's timer.
        self.renewed_at = held_since
        #: Set when a renewal found the claim taken over; the next mark or completion fails too.
        self.lost = False
        #: The thread that holds it, and what waits for it to let go (:meth:`LeaseKeeper.after_drop`).
        self.thread = threading.get_ident()
        self.after: list[Callable[[], None]] | None = None


class LeaseKeeper:
    """Claims held by this process's running handlers, renewed from one thread.

    The thread starts with the first claim held in a process (and again in
    a forked child, which has no threads), wakes every sixth of the
    shortest lease it has seen, and renews what is due: a lease of 60 s
    is renewed 20 to 30 s after it was taken. How long a claim has been
    held is measured on ``timer`` (monotonic: a wall clock that jumps must
    not make every lease look due, or none); the new deadline is written
    in the receiver's clock, like the claim's. :meth:`tick` does one round
    and can be called directly, with an injected ``timer``.
    """

    def __init__(self, *, timer: Callable[[], float] = time.monotonic, thread: bool = True) -> None:
        self.timer = timer
        self._threaded = thread
        self._held: dict[str, Held] = {}  # by claim token
        self._period = 5.0
        self._thread: threading.Thread | None = None

    def hold(
        self, store: Renews, ns: str, id: str, token: str, *, lease: float, clock: Callable[[], float]
    ) -> Held:
        held = Held(store, ns, id, token, lease, clock, self.timer())
        self._held[token] = held
        if lease / 6 < self._period:
            self._period = max(0.01, lease / 6)
        if self._thread is None and self._threaded:
            self._start()
        return held

    def drop(self, held: Held) -> None:
        self._held.pop(held.token, None)
        for step in held.after or ():
            try:
                step()
            except Exception:  # the holder's own outcome stands
                log.exception("a step waiting for %s %s to be let go failed", held.ns, held.id)

    def lost(self, held: Held) -> bool:
        """Whether a renewal found ``held``'s claim ended (see :attr:`Held.lost`)."""
        return held.lost

    def after_drop(self, ns: str, id: str, step: Callable[[], None]) -> bool:
        """Run ``step`` once this thread lets go of delivery ``id`` of ``ns``; False unless it
        holds it.

        A queue may run a job inside ``enqueue`` (RQ's ``is_async=False``), in
        the request that holds the delivery: a worker that fails the job for
        good cannot mark the delivery failed then, and hands that step here.
        """
        thread = threading.get_ident()
        for held in list(self._held.values()):
            if held.thread == thread and held.ns == ns and held.id == id:
                held.after = [*(held.after or ()), step]
                return True
        return False

    def tick(self) -> int:
        """Renew every held claim that is due; the number renewed."""
        renewed = 0
        for held in list(self._held.values()):
            started = self.timer()
            if not held.lost and started - held.renewed_at >= held.lease * RENEW_AFTER:
                renewed += self._renew(held, started)
        return renewed

    def renew_all(self) -> int:
        """Renew every held claim now, due or not; the number renewed.

        A retry simulator's handler moves a fake clock past its lease in no
        time at all, where this keeper, which counts real time, would have
        renewed the claim on the way: the simulator asks for that before it
        lets a retry reach the app while the handler still runs. Renewing
        early is always safe: a held claim's handler is running.
        """
        held = [each for each in list(self._held.values()) if not each.lost]  # one C call
        return sum(self._renew(each, self.timer()) for each in held)

    def _renew(self, held: Held, started: float) -> bool:
        try:
            held.store.renew(held.ns, held.id, held.token, now=held.clock(), lease=held.lease)
        except LeaseLost:
            # Not logged here: the holder's own completion may have ended the claim just before
            # (it lets go after that write), and a warning then sent operators after a double
            # run that never happened. The holder logs a claim really taken over: when its
            # next mark or completion is refused, or, when its handler failed, by asking
            # :meth:`lost` before its release (which is fenced without a word).
            held.lost = True
        except StoreUnavailable:
            log.warning("could not renew the lease of %s %s; trying again", held.ns, held.id)
        except Exception:  # one claim's surprise must not leave the ones after it to expire
            log.exception("renewing the lease of %s %s failed; trying again", held.ns, held.id)
        else:
            held.renewed_at = started
            return True
        return False

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name="flask_hooks-leases", daemon=True)
        self._thread = thread
        thread.start()

    def _run(self) -> None:
        wake = threading.Event()  # never set: a sleep that the interpreter's shutdown does not mind
        while True:
            wake.wait(self._period)
            try:
                self.tick()
            except Exception:  # never let the keeper die; a claim it misses only expires
                log.exception("lease renewal failed")

    def _forked(self) -> None:
        # The parent's claims and thread are not the child's.
        self._held = {}
        self._thread = None


#: The process's keeper, shared by every receiver.
keeper = LeaseKeeper()
os.register_at_fork(after_in_child=keeper._forked)
