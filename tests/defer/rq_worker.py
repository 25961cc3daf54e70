"""The RQ worker the tests run (``rq worker --worker-class tests.defer.rq_worker.PromptWorker``).

RQ 3.0's worker listens for commands in a pubsub thread that waits 60 s per
poll, and relies on the reply to its UNSUBSCRIBE to wake that thread at exit.
When the thread reads the reply before redis-py's ``stop()`` clears its flag
(a race, rq/rq#1613), it polls again, and since redis-py 8 ``stop()`` joins it
without a timeout: ``rq worker --burst`` then takes a minute to exit after its
last job (seen a few times a week in the full suite). Polling every second
bounds that wait, and changes nothing else the tests look at.
"""

from __future__ import annotations

from rq import Worker


class PromptWorker(Worker):
    def subscribe(self) -> None:
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=1, daemon=True, exception_handler=self._pubsub_exception_handler
        )
