#!/usr/bin/env python3
"""Peer half of the queue benchmark: drain N jobs through pgqueuer or procrastinate.

    python peers.py --peer pgqueuer|procrastinate --dsn DSN --jobs N \
        --mode noop|io --concurrency C [--io-ms 50]

Each run sets up the peer's own PostgreSQL schema in the given database (dropping a previous
one), enqueues N jobs in one bulk call (not timed), then runs the peer's worker in this process
until every job has run, counting completions in the job function, and shuts the worker down
the way the peer's documentation describes. One JSON object is printed on stdout; logs go to
stderr. See README.md beside this file for what is measured and why these settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Awaitable, Callable

# Every peer lives in its own PostgreSQL schema, so a run can drop and recreate it freely and
# never touches the worker's own tables (or the other peer's).
SCHEMAS = {"pgqueuer": "peer_pgqueuer", "procrastinate": "peer_procrastinate"}
TASK_NAME = "peer_bench_job"

PGQUEUER_DOCS = "https://janbjorge.github.io/pgqueuer/guides/performance-tuning/"
PGQUEUER_BENCH_DOCS = "https://janbjorge.github.io/pgqueuer/comparisons/benchmarks/"
PROCRASTINATE_DOCS = "https://procrastinate.readthedocs.io/en/stable/howto/production/concurrency.html"
PROCRASTINATE_POOL_DOCS = (
    "https://procrastinate.readthedocs.io/en/stable/discussions.html#mind-the-size-of-your-postgresql-pool"
)


def log(msg: str) -> None:
    print(f"[peers] {msg}", file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    """User + system CPU of this process (all its threads) so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class ClusterCpu:
    """CPU used by a local PostgreSQL cluster: its postmaster, its live children and the
    children it has reaped, read from /proc. Unavailable (None) when the server is not a
    process of this machine that we may read."""

    def __init__(self, backend_pid: int) -> None:
        self.postmaster: int | None = None
        try:
            fields = self._stat(backend_pid)
            if self._comm(backend_pid) == "postgres":
                self.postmaster = int(fields[1])
        except (OSError, ValueError, IndexError):
            self.postmaster = None

    @staticmethod
    def _stat(pid: int) -> list[str]:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return s[s.rfind(")") + 2 :].split()  # fields from 3 (state) on

    @staticmethod
    def _comm(pid: int) -> str:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        ticks = 0
        try:
            pids = [self.postmaster]
            for d in os.listdir("/proc"):
                if d.isdigit():
                    try:
                        if int(self._stat(int(d))[1]) == self.postmaster:
                            pids.append(int(d))
                    except (OSError, ValueError, IndexError):
                        pass
            for pid in pids:
                try:
                    f = self._stat(pid)
                except OSError:
                    continue  # exited meanwhile: now in the postmaster's reaped-children time
                ticks += sum(int(x) for x in f[11:15])  # utime stime cutime cstime
        except OSError:
            return None
        return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mib() -> float:
    """Peak resident set size of this process; ru_maxrss is in KiB on Linux."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class Tally:
    """Counts job completions; fires `all_done` when the N-th distinct job has finished."""

    expected: int
    done: int = 0
    duplicates: int = 0
    seen: set = field(default_factory=set)
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    last_done_at: float = 0.0

    def mark(self, job_id: Any) -> None:
        if job_id in self.seen:
            self.duplicates += 1
            return
        self.seen.add(job_id)
        self.done += 1
        if self.done >= self.expected:
            self.last_done_at = time.perf_counter()
            self.all_done.set()


def make_job_body(mode: str, io_ms: float) -> Callable[[], Awaitable[None]]:
    """The work each job does: nothing (noop), or one awaited I/O wait of io_ms (io)."""
    if mode == "noop":

        async def body() -> None:
            return None

    else:
        delay = io_ms / 1000.0

        async def body() -> None:
            await asyncio.sleep(delay)

    return body


# --------------------------------------------------------------------------------------------
# pgqueuer
# --------------------------------------------------------------------------------------------


async def run_pgqueuer(args: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    schema = SCHEMAS["pgqueuer"]
    # pgqueuer reads its object names and durability from PGQUEUER_* variables (DBSettings);
    # set them before its settings are first read.
    os.environ["PGQUEUER_SCHEMA"] = schema
    os.environ["PGQUEUER_DURABILITY"] = args.pgq_durability

    import asyncpg
    from pgqueuer import QueueManager
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.domain.settings import db_settings
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

    db_settings.cache_clear()

    batch_size = args.batch_size or max(1, args.concurrency // 2)
    # pgqueuer refuses max_concurrent_tasks < 2 * batch_size.
    max_tasks = max(args.concurrency, 2 * batch_size)

    # Setup and enqueue on their own connection.
    admin = await asyncpg.connect(dsn=args.dsn)
    await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    queries = Queries(AsyncpgDriver(admin))
    await queries.install(create_schema=True)
    if args.pgq_autovac:
        await queries.optimize_autovacuum()

    t0 = time.perf_counter()
    n = args.jobs
    await queries.enqueue([TASK_NAME] * n, [None] * n, [0] * n)
    enqueue_s = time.perf_counter() - t0

    # The QueueManager gets a dedicated asyncpg connection (its LISTEN channel lives there).
    worker_conn = await asyncpg.connect(dsn=args.dsn)
    qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
    body = make_job_body(args.mode, args.io_ms)

    @qm.entrypoint(TASK_NAME)
    async def job(j: Job) -> None:
        await body()
        tally.mark(j.id)

    async def stopper() -> None:
        await tally.all_done.wait()
        qm.shutdown.set()  # graceful: the run loop exits, in-flight jobs and buffers finish

    pg = ClusterCpu(await admin.fetchval("SELECT pg_backend_pid()"))
    pg0, cpu0, w0 = pg.seconds(), cpu_seconds(), time.perf_counter()
    stop_task = asyncio.create_task(stopper())
    run_task = asyncio.create_task(
        qm.run(batch_size=batch_size, max_concurrent_tasks=max_tasks)
    )
    await wait_or_timeout(run_task, stop_task, tally, args.timeout, on_timeout=qm.shutdown.set)
    wall, cpu, pg1 = time.perf_counter() - w0, cpu_seconds() - cpu0, pg.seconds()

    left = await admin.fetchval(f'SELECT count(*) FROM "{schema}".pgqueuer')
    ok = await admin.fetchval(
        f"""SELECT count(*) FROM "{schema}".pgqueuer_log WHERE status = 'successful'"""
    )
    await admin.close()

    settings = (
        f"asyncpg driver, one QueueManager on its own asyncpg connection with LISTEN/NOTIFY, "
        f"durability={args.pgq_durability}, max_concurrent_tasks={max_tasks}, "
        f"batch_size={batch_size} (the largest the 2 x batch_size <= max_concurrent_tasks rule "
        f"allows), autovac={'on' if args.pgq_autovac else 'off'}, {args.loop} loop, because "
        f"pgqueuer's Performance Tuning page ({PGQUEUER_DOCS}) gives volatile (all tables "
        f"UNLOGGED) the highest throughput, says to raise batch_size for short jobs, to give the "
        f"QueueManager a direct asyncpg connection and to run 'pgq autovac', its Benchmarks page "
        f"({PGQUEUER_BENCH_DOCS}) puts asyncpg at ~1.7x psycopg, and 'pgq run' uses uvloop"
    )
    return {
        "enqueue_seconds": enqueue_s,
        "worker_started_at": w0,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "postgres_cpu_seconds": None if pg0 is None or pg1 is None else pg1 - pg0,
        "db_remaining": int(left),
        "db_completed": int(ok),
        "settings": settings,
        "knobs": {
            "driver": "asyncpg",
            "durability": args.pgq_durability,
            "batch_size": batch_size,
            "max_concurrent_tasks": max_tasks,
            "autovac": args.pgq_autovac,
            "listen_notify": True,
        },
    }


# --------------------------------------------------------------------------------------------
# procrastinate
# --------------------------------------------------------------------------------------------


async def run_procrastinate(args: argparse.Namespace, tally: Tally) -> dict[str, Any]:
    schema = SCHEMAS["procrastinate"]
    import psycopg
    import procrastinate

    # Drop the previous schema and make an empty one; procrastinate's objects go wherever the
    # connection's search_path points (its "Set the database PG schema" how-to).
    async with await psycopg.AsyncConnection.connect(args.dsn, autocommit=True) as conn:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        pg = ClusterCpu((await (await conn.execute("SELECT pg_backend_pid()")).fetchone())[0])

    pool_size = args.pool_size or args.concurrency + 1
    connector = procrastinate.PsycopgConnector(
        conninfo=args.dsn,
        kwargs={"options": f"-c search_path={schema}"},
        min_size=pool_size,
        max_size=pool_size,
    )
    app = procrastinate.App(connector=connector)
    body = make_job_body(args.mode, args.io_ms)

    @app.task(name=TASK_NAME, queue="bench", pass_context=True)
    async def job(context: procrastinate.JobContext) -> None:
        await body()
        tally.mark(context.job.id)

    async with app.open_async():
        # open_async opened the pool with wait=True: all its connections exist before timing.
        await app.schema_manager.apply_schema_async()

        t0 = time.perf_counter()
        await job.batch_defer_async(*({} for _ in range(args.jobs)))
        enqueue_s = time.perf_counter() - t0

        worker_opts: dict[str, Any] = dict(
            queues=["bench"],
            concurrency=args.concurrency,
            listen_notify=True,
            fetch_job_polling_interval=args.proc_poll,
            install_signal_handlers=False,
        )
        if args.proc_delete_jobs:
            worker_opts["delete_jobs"] = args.proc_delete_jobs

        pg0, cpu0, w0 = pg.seconds(), cpu_seconds(), time.perf_counter()
        run_task = asyncio.create_task(app.run_worker_async(**worker_opts))

        async def stopper() -> None:
            await tally.all_done.wait()
            run_task.cancel()  # graceful: the worker waits for its running jobs, then stops

        stop_task = asyncio.create_task(stopper())
        await wait_or_timeout(run_task, stop_task, tally, args.timeout, on_timeout=run_task.cancel)
        wall, cpu, pg1 = time.perf_counter() - w0, cpu_seconds() - cpu0, pg.seconds()

        async with connector.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1"
            )
            by_status = {s: int(c) for s, c in await cur.fetchall()}

    settings = (
        f"async task, one worker with concurrency={args.concurrency} sub-workers, a psycopg "
        f"pool of {pool_size} connections, listen_notify=True, "
        f"fetch_job_polling_interval={args.proc_poll}s, "
        f"delete_jobs={args.proc_delete_jobs or 'never (default)'}, jobs deferred with "
        f"batch_defer_async, {args.loop} loop (as 'procrastinate worker' runs), because "
        f"procrastinate's docs name async sub-workers (concurrency) as the way to raise a "
        f"worker's throughput ({PROCRASTINATE_DOCS}) and say short jobs need a pool of "
        f"concurrency + 1 connections, with LISTEN/NOTIFY waking the worker and polling only "
        f"as the fallback ({PROCRASTINATE_POOL_DOCS})"
    )
    succeeded = by_status.get("succeeded", 0)
    if args.proc_delete_jobs in ("always", "successful"):
        succeeded = args.jobs - sum(by_status.values())
    return {
        "enqueue_seconds": enqueue_s,
        "worker_started_at": w0,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "postgres_cpu_seconds": None if pg0 is None or pg1 is None else pg1 - pg0,
        "db_remaining": sum(v for k, v in by_status.items() if k in ("todo", "doing")),
        "db_completed": succeeded,
        "db_status": by_status,
        "settings": settings,
        "knobs": {
            "driver": "psycopg",
            "concurrency": args.concurrency,
            "pool_size": pool_size,
            "listen_notify": True,
            "fetch_job_polling_interval": args.proc_poll,
            "delete_jobs": args.proc_delete_jobs or "never",
        },
    }


# --------------------------------------------------------------------------------------------


async def wait_or_timeout(
    run_task: asyncio.Task,
    stop_task: asyncio.Task,
    tally: Tally,
    timeout: float,
    on_timeout: Callable[[], Any],
) -> None:
    """Wait for the worker to stop by itself; past `timeout`, ask it to stop and fail."""
    try:
        await asyncio.wait_for(asyncio.shield(run_task), timeout)
    except asyncio.TimeoutError:
        log(f"timeout after {timeout}s with {tally.done}/{tally.expected} jobs done; stopping")
        on_timeout()
        try:
            await asyncio.wait_for(run_task, 30)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            pass
    except asyncio.CancelledError:
        # procrastinate's run_worker_async re-raises the cancellation it was stopped with,
        # once its graceful shutdown is over.
        if not run_task.cancelled():
            raise
    finally:
        stop_task.cancel()
    if run_task.done() and not run_task.cancelled() and run_task.exception():
        raise run_task.exception()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", required=True, choices=sorted(SCHEMAS))
    p.add_argument("--dsn", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL")
    p.add_argument("--jobs", type=int, required=True)
    p.add_argument("--mode", choices=["noop", "io"], default="noop")
    p.add_argument("--concurrency", type=int, required=True, help="jobs in flight at once")
    p.add_argument("--io-ms", type=float, default=50.0, help="io mode: the awaited wait per job")
    p.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default=None,
        help="default: the peer's own CLI's loop (pgqueuer: uvloop, procrastinate: asyncio)",
    )
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many s")
    g = p.add_argument_group("pgqueuer")
    g.add_argument("--batch-size", type=int, default=0, help="default: concurrency / 2")
    g.add_argument(
        "--pgq-durability", choices=["volatile", "balanced", "durable"], default="volatile"
    )
    g.add_argument("--no-pgq-autovac", dest="pgq_autovac", action="store_false")
    g = p.add_argument_group("procrastinate")
    g.add_argument("--pool-size", type=int, default=0, help="default: concurrency + 1")
    g.add_argument("--proc-poll", type=float, default=5.0, help="fetch_job_polling_interval")
    g.add_argument("--proc-delete-jobs", choices=["never", "successful", "always"], default=None)
    args = p.parse_args(argv)
    if args.loop is None:
        args.loop = "uvloop" if args.peer == "pgqueuer" else "asyncio"
    if not args.dsn:
        p.error("--dsn is required (or set DATABASE_URL)")
    if args.jobs < 1 or args.concurrency < 1:
        p.error("--jobs and --concurrency must be positive")
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally(expected=args.jobs)
    runner = run_pgqueuer if args.peer == "pgqueuer" else run_procrastinate
    r = await runner(args, tally)
    wall, pg_cpu = r["wall_seconds"], r["postgres_cpu_seconds"]
    last = tally.last_done_at - r["worker_started_at"] if tally.all_done.is_set() else None
    return {
        "peer": args.peer,
        "version": metadata.version(args.peer),
        "mode": args.mode,
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "io_ms": args.io_ms if args.mode == "io" else 0,
        "completed": tally.done,
        "duplicates": tally.duplicates,
        "db_completed": r["db_completed"],
        "db_remaining": r["db_remaining"],
        **({"db_status": r["db_status"]} if "db_status" in r else {}),
        "ok": tally.done == args.jobs and r["db_completed"] == args.jobs,
        "wall_seconds": round(wall, 4),
        "jobs_per_second": round(tally.done / wall, 1) if wall > 0 else None,
        "last_job_done_seconds": round(last, 4) if last is not None else None,
        "cpu_seconds": round(r["cpu_seconds"], 3),
        "cpu_per_1k_jobs": round(1000 * r["cpu_seconds"] / max(tally.done, 1), 4),
        "postgres_cpu_seconds": None if pg_cpu is None else round(pg_cpu, 3),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "enqueue_seconds": round(r["enqueue_seconds"], 4),
        "loop": args.loop,
        "python": platform.python_version(),
        "knobs": r["knobs"],
        "settings": r["settings"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.loop == "uvloop":
        import uvloop

        result = uvloop.run(amain(args))
    else:
        result = asyncio.run(amain(args))
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
