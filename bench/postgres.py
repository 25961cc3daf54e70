"""Under gunicorn on PostgreSQL: flask_hooks on ``SqlStore`` vs a hand-written psycopg view.

A throwaway cluster (``tests/postgres.py``'s :class:`PostgresServer`:
``initdb`` into a temporary directory, ``fsync=off``, loopback only) with
one database per side. Ours is ``hooks_app("postgresql+psycopg://...")``, a
plain handler on the store the URL opens; the reference is ``plain_app``'s
:class:`~bench.apps.PlainPostgres`, the same two transactions (a claim,
then the completion with one log line) written with psycopg directly.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from .apps import PlainPostgres
from .common import Fact, Result, Row, percentile
from .cpu import gunicorn, load, server_cpu


def under_gunicorn(n: int = 9000, threads: int = 8, rounds: int = 30) -> list[Row]:
    """Server CPU per delivery and req/s (the goals), PostgreSQL's CPU and p99 beside them.

    Alternating short bursts, medians of their figures, as in
    :func:`bench.cpu.under_gunicorn`. Bursts run one at a time, so the
    cluster's CPU over a burst (postmaster and backends, from the same
    ``schedstat``) is that side's; the load generator shares the 2 cores.
    """
    from tests.postgres import PostgresServer

    cluster = PostgresServer()
    try:
        cluster.start()
        urls = {
            "hooks": cluster.url(cluster.create_database()),
            "plain": cluster.url(cluster.create_database()),
        }
        PlainPostgres.create_schema(urls["plain"])
        assert cluster.proc is not None
        database = cluster.proc.pid
        samples: dict[str, dict[str, list[float]]] = {
            kind: {"cpu": [], "db": [], "rate": [], "latency": []} for kind in urls
        }
        with gunicorn("hooks", urls["hooks"]) as ours, gunicorn("plain", urls["plain"]) as ref:
            servers = {"hooks": ours, "plain": ref}
            for kind, (port, _pid) in servers.items():  # warm up: schema, pools, prepared statements
                load(port, f"warm-{kind}", 400, threads)
            burst = n // rounds
            for r in range(rounds):
                order = list(servers.items()) if r % 2 == 0 else list(reversed(servers.items()))
                for kind, (port, pid) in order:
                    before, db_before = server_cpu(pid), server_cpu(database)
                    rate, latencies = load(port, f"{kind}-{r}", burst, threads)
                    mine = samples[kind]
                    mine["cpu"].append((server_cpu(pid) - before) / burst)
                    mine["db"].append((server_cpu(database) - db_before) / burst)
                    mine["rate"].append(rate)
                    mine["latency"].extend(latencies)
    finally:
        cluster.destroy()
    hooks, plain = samples["hooks"], samples["plain"]

    def median(kind: dict[str, list[float]], name: str) -> float:
        return statistics.median(kind[name])

    where = f"4 gthread workers, {threads} clients"
    return [
        Result(
            "postgres", f"{where}, server CPU/delivery", median(hooks, "cpu"), median(plain, "cpu"), "s", 1.10
        ),
        Result(
            "postgres",
            f"{where}, throughput",
            median(hooks, "rate"),
            median(plain, "rate"),
            "req/s",
            1.00,
            higher_is_better=True,
        ),
        Result(
            "postgres",
            f"{where}, PostgreSQL CPU/delivery",
            median(hooks, "db"),
            median(plain, "db"),
            "s",
            note="postmaster and backends; the reference column: plain psycopg, same transactions",
        ),
        Fact(
            "postgres",
            f"{where}, p99 latency",
            percentile(hooks["latency"], 99) * 1000,
            "ms",
            baseline=percentile(plain["latency"], 99) * 1000,
        ),
    ]


SECTIONS: dict[str, Callable[[], list[Row]]] = {"postgres": under_gunicorn}
