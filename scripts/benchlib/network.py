"""The worker against the local network: end to end, requests per job, polling, wake-up.

Run by scripts/bench (which builds the worker, starts PostgreSQL with pg_stat_statements and
the devnet) with .venv-bench's python:

    network.py e2e     --bin B --devnet devnet.json --capacity capacity.json [--jobs 500] [--workers 2] [--concurrency 4]
    network.py polling --bin B --devnet devnet.json [--in-flight 1000] [--window 20]
    network.py wakeup  --bin B --devnet devnet.json [--jobs 40]
    network.py wallet  --bin B --devnet geth.json --devnet2 ethermint.json [--jobs 69] [--workers 3]

Each prints markdown tables and one JSON object on its last line. Figures, never assertions:
a section fails only when the harness itself does (a job did not end, a worker crashed).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

import psycopg

DSN = os.environ["DATABASE_URL"]


def die(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(1)


def sql(query: str, params=None) -> list[tuple]:
    with psycopg.connect(DSN, autocommit=True) as db:
        cur = db.execute(query, params)
        return cur.fetchall() if cur.description else []


def stats(devnet: dict) -> dict:
    with urllib.request.urlopen(devnet["admin_url"] + "/admin/stats", timeout=30) as r:
        return json.load(r)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def pg_counters() -> dict:
    """Cluster-wide commits and WAL; updates of crynux.jobs; statements by kind (pg_stat_statements)."""
    (commits, wal), = sql("SELECT (SELECT sum(xact_commit) FROM pg_stat_database), pg_current_wal_lsn() - '0/0'")
    (upd, hot), = sql("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'crynux.jobs'::regclass")
    rows = sql("SELECT query, calls FROM pg_stat_statements")
    statements = sum(c for q, c in rows if "pg_stat" not in q and "pg_current_wal_lsn" not in q)
    claims = sum(c for q, c in rows if "claimed AS (" in q)  # the claim statement, with or without its poll batch
    due = sum(c for q, c in rows if "min(greatest(run_at, locked_until))" in q)
    return {"commits": int(commits), "wal": int(wal), "updates": upd, "hot": hot, "statements": statements,
            "claims": claims, "due_queries": due}


def pg_delta(before: dict, after: dict, per: float) -> dict:
    d = {k: (after[k] - before[k]) / per for k in before}
    hot_share = (after["hot"] - before["hot"]) / max(after["updates"] - before["updates"], 1)
    return {"commits": d["commits"], "statements": d["statements"], "wal_kib": d["wal"] / 1024,
            "job_row_updates": d["updates"], "hot_share": hot_share, "claim_queries": d["claims"],
            "next_due_queries": d["due_queries"]}


def pg_stats_settled() -> None:
    """Backends publish their statistics when they exit or go idle: wait until the workers' have."""
    deadline = time.time() + 30
    while time.time() < deadline:
        (n,), = sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
        if n == 0:
            break
        time.sleep(0.05)
    sql("SELECT pg_stat_force_next_flush()")


def key_file(devnet: dict, index: int, work: str) -> str:
    path = os.path.join(work, f"wallet-{index}.key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(devnet["accounts"][index]["private_key"])
    return path


def worker(args, devnet_file: str, key: str, name: str, *extra: str, log=None) -> subprocess.Popen:
    cmd = [args.bin, "run", "--devnet", devnet_file, "--private-key-file", key, "--worker-name", name, *extra]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL)


def finish(p: subprocess.Popen, stop: bool = False) -> tuple[float, float]:
    """Waits for a worker (after SIGTERM when `stop`); its peak RSS (MiB) and CPU seconds."""
    if stop:
        p.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        die(f"a worker exited with {p.returncode}")
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def sd_args(prompt: str, images: int) -> str:
    """SQL text of an SD argument string whose prompt ends with the row number i."""
    return ("""'{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"' || %s::text || ' ' || i || '","task_config":{"num_images":"""
            + str(int(images)) + """}}'""")


def submit_sd(count: int, prompt: str, images: int) -> list[int]:
    return [r[0] for r in sql(f"INSERT INTO crynux.jobs (kind, task_args) SELECT 'sd', {sd_args('%s', images)} "
                              "FROM generate_series(1, %s) AS i RETURNING id", (prompt, count))]


def wait_rows(query: str, want, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        (value,), = sql(query)
        if value == want:
            return
        time.sleep(0.1)
    die(f"{what}: still {value!r} after {timeout:.0f} s")


def by_kind(counts: dict, per: float) -> str:
    return ", ".join(f"{k} {v / per:.2f}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v)


def diff(after: dict, before: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items()}


# ---------------------------------------------------------------------------------------- e2e

def e2e(args) -> dict:
    devnet = json.load(open(args.devnet))
    capacity = json.load(open(args.capacity))
    key = key_file(devnet, 1, args.work)
    sql("TRUNCATE crynux.jobs CASCADE")
    sql("SELECT pg_stat_statements_reset()")
    s0, p0 = stats(devnet), pg_counters()
    submit_sd(args.jobs, "bench", 2)
    start = time.time()
    procs = [worker(args, args.devnet, key, f"bench-{i}", "--concurrency", str(args.concurrency), "--poll-interval", "1",
                    "--poll-interval-max", "5", "--exit-when-idle", "--quiet") for i in range(args.workers)]
    figures = [finish(p) for p in procs]
    seconds = time.time() - start
    pg_stats_settled()
    s1, p1 = stats(devnet), pg_counters()
    statuses = dict(sql("SELECT status, count(*) FROM crynux.jobs GROUP BY 1"))
    if statuses.get("succeeded", 0) != args.jobs:
        die(f"not every job succeeded: {statuses}")
    latencies = [r[0] for r in sql("SELECT extract(epoch FROM finished_at - submitted_at)::float8 FROM crynux.jobs")]
    rpc = diff(s1["rpc_calls_by_kind"], s0["rpc_calls_by_kind"])
    relay = diff(s1["relay"]["requests_by_kind"], s0["relay"]["requests_by_kind"])
    n = args.jobs
    out = {
        "jobs": n, "workers": args.workers, "concurrency": args.concurrency, "seconds": seconds, "jobs_per_s": n / seconds,
        "latency_p50_s": pct(latencies, 50), "latency_p95_s": pct(latencies, 95),
        "capacity": capacity,
        "rpc_calls_per_job": sum(rpc.values()) / n,
        "rpc_http_requests_per_job": (s1["rpc_http_requests"] - s0["rpc_http_requests"]) / n,
        "rpc_calls_by_kind_per_job": {k: v / n for k, v in rpc.items()},
        "relay_requests_per_job": sum(relay.values()) / n,
        "relay_requests_by_kind_per_job": {k: v / n for k, v in relay.items()},
        "postgres_per_job": pg_delta(p0, p1, n),
        "statements_per_job": {q: c / n for q, c in sql(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90), calls FROM pg_stat_statements "
            "WHERE query NOT LIKE '%%pg_stat%%' AND query NOT LIKE '%%pg_current_wal_lsn%%' ORDER BY calls DESC LIMIT 20")},
        "worker_rss_mib": [f[0] for f in figures],
        "worker_cpu_s": [f[1] for f in figures],
    }
    cap = capacity["tx_per_s"]
    print(f"\n== end to end: {n} SD jobs of 2 images, {args.workers} workers × {args.concurrency} threads, one wallet\n")
    print("| | jobs/s (tx/s) | ÷ network capacity | p50 s | p95 s |")
    print("|---|---|---|---|---|")
    print(f"| crynux-worker, whole jobs | {n / seconds:.2f} | {n / seconds / cap * 100:.0f} % | {out['latency_p50_s']:.2f} | {out['latency_p95_s']:.2f} |")
    print(f"| plain eth-account script, createTask only | {cap:.2f} | 100 % | {capacity['latency_p50_s']:.2f} | {capacity['latency_p95_s']:.2f} |")
    pg = out["postgres_per_job"]
    print(f"\n== PostgreSQL cost per four-stage job (the run above; submit included)\n")
    print("| commits | statements | WAL | updates of the job's row | HOT updates | claim queries | next-due queries |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {pg['commits']:.1f} | {pg['statements']:.1f} | {pg['wal_kib']:.1f} KiB | {pg['job_row_updates']:.1f} | "
          f"{pg['hot_share'] * 100:.0f} % | {pg['claim_queries']:.2f} | {pg['next_due_queries']:.2f} |")
    print(f"\n== requests per job (the run above; cap = 2 results)\n")
    print("| | per job | by kind |")
    print("|---|---|---|")
    print(f"| JSON-RPC calls | {out['rpc_calls_per_job']:.2f} ({out['rpc_http_requests_per_job']:.2f} HTTP requests) | {by_kind(rpc, n)} |")
    print(f"| relay requests | {out['relay_requests_per_job']:.2f} | {by_kind(relay, n)} |")
    return out


# ------------------------------------------------------------------------------------ one wallet

def one_wallet(args, devnet_file: str) -> dict:
    devnet = json.load(open(devnet_file))
    key = key_file(devnet, 2, args.work)
    sql("TRUNCATE crynux.jobs CASCADE")
    s0 = stats(devnet)
    sql("INSERT INTO crynux.jobs (kind, task_args) SELECT 'gpt', "
        """'{"model":"gpt2","messages":[{"role":"user","content":"one wallet ' || i || '"}],"generation_config":{"max_new_tokens":30},"seed":42}' """
        "FROM generate_series(1, %s) AS i", (args.jobs,))
    start = time.time()
    procs = [worker(args, devnet_file, key, f"wallet-{i}", "--poll-interval", "0.3", "--poll-interval-max", "2",
                    "--exit-when-idle", "--quiet") for i in range(args.workers)]
    for p in procs:
        finish(p)
    seconds = time.time() - start
    statuses = dict(sql("SELECT status, count(*) FROM crynux.jobs GROUP BY 1"))
    if statuses.get("succeeded", 0) != args.jobs:
        die(f"not every job succeeded: {statuses}")
    sends = diff(stats(devnet)["rpc_calls_by_kind"], s0["rpc_calls_by_kind"]).get("eth_sendRawTransaction", 0)
    return {"seconds": seconds, "sends_per_job": sends / args.jobs}


def wallet(args) -> dict:
    """Many workers on one wallet: geth queues a nonce ahead of the account's, an Ethermint node
    refuses it ("invalid nonce; got N, expected M"), so there the sends must reach it in order."""
    geth, ethermint = one_wallet(args, args.devnet), one_wallet(args, args.devnet2)
    out = {"jobs": args.jobs, "workers": args.workers, "geth": geth, "ethermint": ethermint,
           "ethermint_over_geth": ethermint["seconds"] / geth["seconds"]}
    print(f"\n== one wallet, {args.jobs} GPT jobs through {args.workers} workers: geth's pool vs an Ethermint node\n")
    print("| node | seconds | sendRawTransaction per job |")
    print("|---|---|---|")
    for name in ("geth", "ethermint"):
        print(f"| {name} | {out[name]['seconds']:.1f} | {out[name]['sends_per_job']:.2f} |")
    print(f"\nEthermint ÷ geth: {out['ethermint_over_geth']:.2f}×")
    return out


# ------------------------------------------------------------------------------------ polling

def polling(args) -> dict:
    """Jobs in flight at poll with one worker: requests, database writes and memory per tick.

    The tasks are real: `--tasks` jobs asking the simulated nodes never to finish (devnet:stuck)
    are created by the worker itself; the rest of the in-flight jobs are copies of those at poll
    (several jobs may follow one task: the requests per job are the same)."""
    devnet = json.load(open(args.devnet))
    key = key_file(devnet, 1, args.work)
    sql("TRUNCATE crynux.jobs CASCADE")
    seeds = submit_sd(args.tasks, "devnet:stuck", 1)
    p = worker(args, args.devnet, key, "seed", "--concurrency", "8", "--quiet")
    wait_rows("SELECT count(*) FROM crynux.jobs WHERE stage = 'poll'", args.tasks, 300, "stuck tasks reaching poll")
    finish(p, stop=True)
    results = []
    for in_flight in args.in_flight:
        sql("DELETE FROM crynux.jobs WHERE id <> ALL(%s)", (seeds,))
        sql("""INSERT INTO crynux.jobs (kind, task_args, stage, task_type, task_hash, cap, vram_limit, fee_wei, wallet_address,
                   chain_id, tx_nonce, tx_hash, tx_block_number, task_id, task_deadline, tx_signed_at, tx_mined_at, args_uploaded_at)
               SELECT kind, task_args || ' ', stage, task_type, task_hash, cap, vram_limit, fee_wei, wallet_address, chain_id,
                   tx_nonce, tx_hash, tx_block_number, task_id, task_deadline, tx_signed_at, tx_mined_at, args_uploaded_at
               FROM crynux.jobs, generate_series(1, %s) WHERE id = ANY(%s)""",
            ((in_flight - args.tasks + args.tasks - 1) // args.tasks, seeds))
        sql("DELETE FROM crynux.jobs WHERE id IN (SELECT id FROM crynux.jobs WHERE id <> ALL(%s) ORDER BY id OFFSET %s)",
            (seeds, in_flight - args.tasks))
        (count,), = sql("SELECT count(*) FROM crynux.jobs WHERE status = 'pending' AND stage = 'poll'")
        sql("UPDATE crynux.jobs SET run_at = now(), stage_entered_at = now(), locked_by = NULL, locked_until = NULL")
        name = f"poll-{in_flight}"
        # A fixed one-second poll interval: one tick per second.
        p = worker(args, args.devnet, key, name, "--concurrency", "4", "--poll-interval", "1", "--poll-interval-max", "1", "--quiet")
        # Warm-up: the first round finds every job due at once. (A measurement window, not a wait for a signal.)
        time.sleep(min(5, args.window))
        s0, p0 = stats(devnet), pg_counters()
        time.sleep(args.window)
        s1, p1 = stats(devnet), pg_counters()
        rss, cpu = finish(p, stop=True)
        ticks = args.window  # one tick per second
        rpc = diff(s1["rpc_calls_by_kind"], s0["rpc_calls_by_kind"])
        pg = pg_delta(p0, p1, ticks)
        results.append({
            "in_flight": int(count), "window_s": args.window,
            "http_requests_per_tick": (s1["rpc_http_requests"] - s0["rpc_http_requests"]) / ticks,
            "eth_calls_per_tick": sum(v for k, v in rpc.items() if k.startswith("eth_call")) / ticks,
            "rpc_calls_by_kind_per_tick": {k: v / ticks for k, v in rpc.items()},
            "postgres_per_tick": pg, "peak_rss_mib": rss,
        })
    print(f"\n== polling: jobs in flight at poll, one worker (4 threads), one tick per second, {args.window} s measured\n")
    print("| in flight | HTTP requests / tick | eth_calls / tick | commits / tick | WAL / tick | job-row updates / tick | HOT | worker peak RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        pg = r["postgres_per_tick"]
        print(f"| {r['in_flight']} | {r['http_requests_per_tick']:.1f} | {r['eth_calls_per_tick']:.1f} | {pg['commits']:.1f} | "
              f"{pg['wal_kib']:.1f} KiB | {pg['job_row_updates']:.1f} | {pg['hot_share'] * 100:.0f} % | {r['peak_rss_mib']:.0f} MiB |")
    return {"tasks": args.tasks, "runs": results}


# ------------------------------------------------------------------------------------- wakeup

LOG_SIGNED = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \S+ job (\d+) signed create_task")


def node_estimate_ms(devnet: dict, sender: str, calls: int = 20) -> list[float]:
    """Milliseconds per eth_estimateGas of a one-image SD createTask (the worker's call), one at a time."""
    word = lambda n: f"{n:064x}"
    data = "0x043b438f" + word(0) + "ab" * 32 + word(0) + word(8) + word(1)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_estimateGas",
                       "params": [{"from": sender, "to": devnet["task_contract"], "data": data, "value": hex(41 * 10**17)}]}).encode()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        request = urllib.request.Request(devnet["rpc_url"], data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
        if "result" not in answer:
            die(f"eth_estimateGas failed: {answer}")
        times.append((time.perf_counter() - start) * 1e3)
    return times


def wakeup(args) -> dict:
    """Idle workers, one job inserted at a time: insert → claimed, and insert → createTask signed
    and stored (the broadcast follows at once), from PostgreSQL's clock and the worker's log."""
    devnet = json.load(open(args.devnet))
    key = key_file(devnet, 1, args.work)
    sql("TRUNCATE crynux.jobs CASCADE")
    log_path = os.path.join(args.work, "wakeup.log")
    log = open(log_path, "w")
    procs = [worker(args, args.devnet, key, f"wake-{i}", "--concurrency", "4", log=log) for i in range(2)]
    lease = 120.0
    claimed, signed_ids = [], []
    with psycopg.connect(DSN, autocommit=True) as db:
        deadline = time.time() + 60
        while open(log_path).read().count(" started: ") < 2:  # both workers listening
            if time.time() > deadline:
                die("the workers did not start within 60 s")
            time.sleep(0.05)
        for i in range(args.jobs):
            (job_id, submitted), = db.execute(
                f"INSERT INTO crynux.jobs (kind, task_args) SELECT 'sd', {sd_args('%s', 1)} FROM (SELECT %s AS i) AS one "
                "RETURNING id, submitted_at", ("wake", i)).fetchall()
            # The lease's end minus its length is the claim's time, on the server's clock.
            deadline = time.time() + 30
            while time.time() < deadline:
                (until,), = db.execute("SELECT locked_until FROM crynux.jobs WHERE id = %s", (job_id,)).fetchall()
                if until is not None:
                    claimed.append((until - submitted).total_seconds() - lease)
                    break
            else:
                die(f"job {job_id} was not claimed within 30 s")
            # The next insert only once this job is past create: the workers are idle again.
            while db.execute("SELECT stage FROM crynux.jobs WHERE id = %s", (job_id,)).fetchall()[0][0] == "create":
                time.sleep(0.01)
            signed_ids.append((job_id, submitted))
    for p in procs:
        finish(p, stop=True)
    log.close()
    signed_at = {}
    for line in open(log_path):
        m = LOG_SIGNED.match(line)
        if m:
            h, mi, s, ms, job = (int(x) for x in m.groups())
            signed_at[job] = (h, mi, s, ms)
    signed = []
    for job_id, submitted in signed_ids:
        if job_id not in signed_at:
            continue
        h, mi, s, ms = signed_at[job_id]
        utc = submitted.astimezone(timezone.utc)
        at = utc.replace(hour=h, minute=mi, second=s, microsecond=ms * 1000)
        signed.append((at - utc).total_seconds())
    # The node's share of "signed": the same createTask's gas estimate, asked directly.
    estimate_ms = node_estimate_ms(devnet, devnet["accounts"][1]["address"])
    out = {"jobs": args.jobs, "claim_p50_ms": pct(claimed, 50) * 1e3, "claim_p95_ms": pct(claimed, 95) * 1e3,
           "signed_p50_ms": pct(signed, 50) * 1e3, "signed_p95_ms": pct(signed, 95) * 1e3,
           "node_estimate_p50_ms": pct(estimate_ms, 50), "node_estimate_p95_ms": pct(estimate_ms, 95)}
    print(f"\n== wake-up: {args.jobs} jobs inserted one at a time, 2 idle workers × 4 threads\n")
    print("| insert → | p50 | p95 |")
    print("|---|---|---|")
    print(f"| claimed (LISTEN/NOTIFY wake-up and claim) | {out['claim_p50_ms']:.1f} ms | {out['claim_p95_ms']:.1f} ms |")
    print(f"| createTask signed and stored (gas estimate, queue price, nonce; broadcast follows) | {out['signed_p50_ms']:.1f} ms | {out['signed_p95_ms']:.1f} ms |")
    print(f"| (the node alone: eth_estimateGas of the same createTask, 20 calls) | {out['node_estimate_p50_ms']:.1f} ms | {out['node_estimate_p95_ms']:.1f} ms |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("section", choices=["e2e", "polling", "wakeup", "wallet"])
    p.add_argument("--bin", required=True)
    p.add_argument("--devnet", required=True)
    p.add_argument("--devnet2", help="wallet: the Ethermint-flavoured network")
    p.add_argument("--work", default=tempfile.gettempdir())
    p.add_argument("--capacity", help="e2e: capacity.py's JSON output")
    p.add_argument("--jobs", type=int, default=500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--tasks", type=int, default=40, help="polling: real stuck tasks")
    p.add_argument("--in-flight", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000])
    p.add_argument("--window", type=float, default=20)
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args()
    out = {"e2e": e2e, "polling": polling, "wakeup": wakeup, "wallet": wallet}[args.section](args)
    out["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    if args.out:
        json.dump(out, open(args.out, "w"), indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
