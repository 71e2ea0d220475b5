"""The orchestrator behind scripts/chaos: submits jobs, runs workers, injects faults on a
seeded schedule, then checks the outcome against the chain and the database."""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

from eth_utils import keccak

BIN = os.environ["CHAOS_BIN"]
WORK = os.environ["CHAOS_WORK"]
DEVNET = json.load(open(os.environ["CHAOS_DEVNET"]))
DB = os.environ["DATABASE_URL"]
PG_CTL = os.environ["CHAOS_PG_CTL"]
PG_DATA = os.environ["CHAOS_PG_DATA"]
RUNAS = os.environ.get("CHAOS_PG_RUNAS", "").split()
TASK_PENDING = "0x" + keccak(text="TaskPending(uint256,uint256,address,bytes32,bytes32)").hex()


def psql(sql, *args):
    """One statement through psql; rows as lists of strings. Retries while the server is away."""
    for attempt in range(60):
        out = subprocess.run(["psql", DB, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True)
        if out.returncode == 0:
            return [line.split("\t") for line in out.stdout.splitlines() if line]
        time.sleep(0.5)
    raise SystemExit(f"psql failed: {out.stderr}")


def rpc(method, params):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(DEVNET["rpc_url"], body, {"Content-Type": "application/json"})
    for _ in range(20):
        reply = json.load(urllib.request.urlopen(request, timeout=30))
        if "result" in reply:
            return reply["result"]
        time.sleep(0.2)  # the fault knobs are off by now, but be patient
    raise SystemExit(f"{method}: {reply}")


def admin(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(DEVNET["admin_url"] + path, data, {"Content-Type": "application/json"}, method=method)
    return json.load(urllib.request.urlopen(request, timeout=30))


class Workers:
    def __init__(self, keys, count, extra=()):
        self.keys = keys
        self.count = count
        self.extra = list(extra)
        self.procs = {}
        self.logs = {}
        self.names = {}
        self.started = 0

    def start(self, slot):
        self.started += 1
        name = f"chaos-{slot}-{self.started}"
        log = open(os.path.join(WORK, name + ".log"), "w")
        args = [BIN, "run", "--devnet", os.environ["CHAOS_DEVNET"], "--worker-name", name, "--concurrency", "4",
                "--poll-interval", "0.5", "--poll-interval-max", "3", "--fee-per-result-wei", "1000", "--lease-seconds", "10",
                "--rebroadcast-after", "3", "--replace-after", "8", "--keeper-interval", "2", "--shutdown-grace", "10"] + self.extra
        for key in self.keys:
            args += ["--private-key-file", key]
        self.procs[slot] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.logs[slot] = log.name
        self.names[slot] = name

    def kill(self, slot, sig):
        self.procs[slot].send_signal(sig)

    def alive(self, slot):
        return self.procs[slot].poll() is None

    def stop_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()


def submit(count, tag):
    psql(f"""
        INSERT INTO crynux.jobs (kind, task_args)
        SELECT CASE WHEN i % 4 = 3 THEN 'gpt' ELSE 'sd' END,
               CASE WHEN i % 4 = 3
                    THEN format('{{"model":"gpt2","messages":[{{"role":"user","content":"{tag} %s"}}]}}', i)
                    ELSE format('{{"base_model":"crynux-ai/stable-diffusion-v1-5","prompt":"{tag} %s","task_config":{{"num_images":%s}}}}', i, 1 + i % 2)
               END
        FROM generate_series(1, {count}) AS i""")


def counts(tag):
    rows = psql(f"SELECT status, count(*) FROM crynux.jobs WHERE task_args LIKE '%{tag} %' GROUP BY 1")
    return {status: int(n) for status, n in rows}


def held_by(name, ids=None):
    """Pending jobs whose lease the worker process `name` holds (its lease holder is name#suffix)."""
    only = f" AND id IN ({','.join(map(str, ids))})" if ids else ""
    return {int(i) for (i,) in psql(f"SELECT id FROM crynux.jobs WHERE status = 'pending' AND locked_by LIKE '{name}#%'{only}")}


KILLED_INSIDE = {}  # stage -> kills of a worker that held a job in it


def holder_of(workers, stage):
    """The slot of a worker holding a job in `stage` now, or None."""
    rows = psql(f"SELECT split_part(locked_by, '#', 1) FROM crynux.jobs WHERE status = 'pending' AND stage = '{stage}' "
                f"AND locked_until > now() ORDER BY random() LIMIT 1")
    by_name = {name: slot for slot, name in workers.names.items()}
    return by_name.get(rows[0][0]) if rows else None


def run_jobs(tag, count, workers, faults, fault_seconds, rng, timeout):
    """Runs `count` jobs to the end; returns (seconds, fault log). A fault log entry is
    (kind, time, seconds to recover or None): for a killed worker, until every job it held is
    claimed by another (or ended); measured while the run goes on."""
    submit(count, tag)
    start = time.time()
    events = []
    orphans = []  # [event index, worker name, job ids still held]
    for slot in range(workers.count):
        workers.start(slot)
    restarted_pg = terminated = False
    kinds = ["kill", "terminate-connections", "rpc", "relay", "chain", "sigterm", "restart-postgres"]
    # Every kind once, in a seeded order, then seeded draws (kills twice as likely).
    planned = rng.sample(kinds, len(kinds))
    gap = (2, 4) if fault_seconds < 60 else (3, 7)
    next_fault = start + rng.uniform(*gap)
    last_report = start
    while time.time() - start < timeout:
        now = time.time()
        c = counts(tag)
        if now - last_report >= 10:
            print(f"  {now - start:5.0f} s: {c}, faults so far: {len(events)}", file=sys.stderr, flush=True)
            last_report = now
        for entry in list(orphans):
            index, name, ids = entry
            entry[2] = held_by(name, ids)
            if not entry[2]:
                kind, at, _ = events[index]
                events[index] = (kind, at, now - at)
                orphans.remove(entry)
        if c.get("pending", 0) == 0 and sum(c.values()) == count:
            break
        for slot, proc in list(workers.procs.items()):
            if proc.poll() is not None:  # only the fault actions below end workers, and restart them at once
                raise SystemExit(f"worker {slot} ended by itself:\n" + open(workers.logs[slot]).read()[-3000:])
        if faults and now - start < fault_seconds and now >= next_fault:
            kind = planned.pop(0) if planned else rng.choice(kinds + ["kill"])
            if kind == "restart-postgres" and restarted_pg:
                kind = "terminate-connections"
            if kind == "sigterm" and terminated:
                kind = "kill"
            events.append((kind, now, None))
            if kind in ("kill", "sigterm"):
                slot = rng.randrange(workers.count)
                if kind == "kill":
                    # Kills alternate between a worker inside create and one inside fetch, when
                    # one is: the stages that send money and store results.
                    stage = "create" if sum(1 for e in events if e[0] == "kill") % 2 else "fetch"
                    target = holder_of(workers, stage)
                    if target is not None:
                        slot = target
                        KILLED_INSIDE[stage] = KILLED_INSIDE.get(stage, 0) + 1
                if workers.alive(slot):
                    held = held_by(workers.names[slot])
                    workers.kill(slot, signal.SIGKILL if kind == "kill" else signal.SIGTERM)
                    workers.procs[slot].wait(60 if kind == "sigterm" else 10)
                    if kind == "sigterm" and workers.procs[slot].returncode != 0:
                        raise SystemExit(f"SIGTERM did not end worker {slot} cleanly:\n" + open(workers.logs[slot]).read()[-3000:])
                    terminated |= kind == "sigterm"
                    # SIGTERM hands its jobs back at once; SIGKILL leaves them to lease expiry.
                    still = held_by(workers.names[slot], held) if held else set()
                    if still:
                        orphans.append([len(events) - 1, workers.names[slot], still])
                    else:
                        events[-1] = (kind, now, time.time() - now)
                time.sleep(rng.uniform(0.5, 2))
                workers.start(slot)
            elif kind == "terminate-connections":
                psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() "
                     "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
            elif kind == "restart-postgres":
                # No pipes: the server pg_ctl starts would keep them open, and the run would wait forever.
                subprocess.run(RUNAS + [PG_CTL, "-D", PG_DATA, "-l", os.path.join(PG_DATA, "..", "postgres.log"), "-m", "fast", "-w",
                                        "restart"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                restarted_pg = True
            elif kind == "rpc":
                admin("POST", "/admin/config", {"rpc_error_rate": 0.2, "rpc_http500_rate": 0.2, "rpc_stall_rate": 0.05, "rpc_stall_ms": 3000})
            elif kind == "relay":
                admin("POST", "/admin/config", {"relay_http500_rate": 0.2, "relay_stall_rate": 0.05, "relay_stall_ms": 3000,
                                                "relay_sync_lag_ms": 2000})
            elif kind == "chain":
                admin("POST", "/admin/config", {"tx_drop_rate": 0.2, "tx_mine_delay_ms": 2000})
            next_fault = now + rng.uniform(*gap)
        if faults and now - start >= fault_seconds:
            calm()
        time.sleep(0.3)
    calm()
    return time.time() - start, events


def recovery(tag, events, fault_end):
    """Per kind of fault, the median seconds until what it hit moved on:
    kill / sigterm: every job the worker held is claimed by another worker (measured live);
    terminate-connections / restart-postgres: the next stage transition written by any worker;
    rpc / relay / chain (their rates stay until the fault period ends): the next job that
    succeeded after the end of the fault period."""
    writes = sorted(float(t) for (t,) in psql("SELECT extract(epoch FROM at) FROM crynux.job_events WHERE worker IS NOT NULL"))
    finished = sorted(float(t) for (t,) in psql(f"SELECT extract(epoch FROM finished_at) FROM crynux.jobs "
                                                 f"WHERE task_args LIKE '%{tag} %' AND status = 'succeeded'"))
    by_kind = {}
    for kind, at, measured in events:
        if kind in ("kill", "sigterm"):
            value = measured
        elif kind in ("terminate-connections", "restart-postgres"):
            value = next((t - at for t in writes if t > at), None)
        else:
            value = next((t - fault_end for t in finished if t >= fault_end), None)
        if value is not None:
            by_kind.setdefault(kind, []).append(value)
    return {kind: statistics.median(values) for kind, values in sorted(by_kind.items())}


def calm():
    admin("POST", "/admin/config", {"rpc_error_rate": 0, "rpc_http500_rate": 0, "rpc_stall_rate": 0, "relay_http500_rate": 0,
                                    "relay_stall_rate": 0, "relay_sync_lag_ms": 500, "tx_drop_rate": 0, "tx_mine_delay_ms": 0})


def settle(wallets, timeout=120):
    """Waits until every nonce the database reserved is used on chain and nothing is pending."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        settled = True
        for wallet in wallets:
            latest = int(rpc("eth_getTransactionCount", [wallet, "latest"]), 16)
            pending = int(rpc("eth_getTransactionCount", [wallet, "pending"]), 16)
            reserved = int((psql(f"SELECT next_nonce FROM crynux.wallets WHERE address = '{wallet.lower()}'") or [["0"]])[0][0])
            settled &= latest == pending and reserved <= latest
        if settled:
            return
        time.sleep(1)


def check(tag, wallets, count):
    """The five numbers that must be 0, and the details."""
    jobs = psql(f"SELECT id, status, coalesce(task_hash, ''), coalesce(task_id::text, ''), kind, coalesce(cap, 0), recreations "
                f"FROM crynux.jobs WHERE task_args LIKE '%{tag} %'")
    lost = count - len(jobs) + int(psql(f"SELECT count(*) FROM crynux.jobs WHERE task_args LIKE '%{tag} %' "
                                        "AND status = 'pending' AND run_at IS NULL")[0][0])
    stuck = sum(1 for j in jobs if j[1] == "pending")
    created = {}
    for wallet in wallets:
        topic = "0x" + "0" * 24 + wallet[2:].lower()
        for log in rpc("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest", "address": DEVNET["task_contract"],
                                        "topics": [TASK_PENDING, topic]}]):
            task_hash = "0x" + log["data"][2 + 128:2 + 192]
            created[task_hash] = created.get(task_hash, 0) + 1
    paid_twice = sum(1 for j in jobs if j[2] and created.get(j[2], 0) > 1 + int(j[6]))
    wrong = 0
    for job_id, status, _, task_id, kind, cap, _ in jobs:
        if status != "succeeded":
            continue
        uploaded = {f["index"]: f["sha256"].lower() for f in admin("GET", f"/admin/results/{task_id}").get("files", [])}
        stored = {int(i): d for i, d in psql(f"SELECT result_index, encode(sha256, 'hex') FROM crynux.job_results WHERE job_id = {job_id}")}
        wanted = 1 if kind == "gpt" else int(cap)
        if len(stored) != wanted or stored != {i: uploaded.get(i) for i in stored}:
            wrong += 1
    gaps = 0
    for wallet in wallets:
        latest = int(rpc("eth_getTransactionCount", [wallet, "latest"]), 16)
        pending = int(rpc("eth_getTransactionCount", [wallet, "pending"]), 16)
        reserved = int((psql(f"SELECT next_nonce FROM crynux.wallets WHERE address = '{wallet.lower()}'") or [["0"]])[0][0])
        gaps += (pending - latest) + max(0, reserved - latest)
    return {"lost": lost, "paid twice": paid_twice, "stuck": stuck, "wrong results": wrong, "nonce gaps": gaps,
            "succeeded": sum(1 for j in jobs if j[1] == "succeeded"), "failed": sum(1 for j in jobs if j[1] == "failed"),
            "recreated": sum(int(j[6]) for j in jobs)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--jobs", type=int, default=300)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--wallets", type=int, default=2)
    p.add_argument("--compare", action="store_true")
    p.add_argument("--short", action="store_true")
    args = p.parse_args()
    jobs, fault_seconds, timeout = (80, 35, 600) if args.short else (args.jobs, 150, 1500)
    rng = random.Random(args.seed)
    keys = []
    for i, account in enumerate(DEVNET["accounts"][:args.wallets]):
        path = os.path.join(WORK, f"wallet-{i}.key")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(account["private_key"])
        keys.append(path)
    wallets = [a["address"] for a in DEVNET["accounts"][:args.wallets]]

    baseline = None
    if args.compare:
        workers = Workers(keys, args.workers)
        baseline, _ = run_jobs("calm", jobs, workers, False, 0, rng, timeout)
        workers.stop_all()
    workers = Workers(keys, args.workers)
    started = time.time()
    seconds, events = run_jobs("chaos", jobs, workers, True, fault_seconds, rng, timeout)
    alive = [slot for slot in workers.procs if workers.alive(slot)]
    settle(wallets)  # the wallet keepers finish what is still in the pool
    workers.stop_all()
    result = check("chaos", wallets, jobs)

    print(f"\n== chaos run: seed {args.seed}, {jobs} jobs, {args.workers} workers, {args.wallets} wallets, "
          f"{len(events)} faults in {fault_seconds} s")
    print("| check | count |\n|---|---|")
    for name in ("lost", "paid twice", "stuck", "wrong results", "nonce gaps", "succeeded", "failed", "recreated"):
        print(f"| {name} | {result[name]} |")
    print(f"| workers alive at the end | {len(alive)} of {args.workers} |")
    print("\n| fault | injected | median s to recover |\n|---|---|---|")
    kinds = {}
    for kind, _, _ in events:
        kinds[kind] = kinds.get(kind, 0) + 1
    fault_end = min(started + fault_seconds, started + seconds)
    for kind, median in recovery("chaos", events, fault_end).items():
        print(f"| {kind} | {kinds[kind]} | {median:.1f} |")
    print(f"kills of a worker inside a stage: {KILLED_INSIDE or 'none'}")
    unrecovered = sum(1 for kind, _, measured in events if kind in ("kill", "sigterm") and measured is None)
    if unrecovered:
        print(f"workers stopped whose jobs were never claimed again: {unrecovered}")
    print(f"\nthroughput with faults: {jobs / seconds:.2f} jobs/s ({seconds:.0f} s)")
    if baseline:
        print(f"throughput without faults: {jobs / baseline:.2f} jobs/s ({baseline:.0f} s); ratio {baseline / seconds:.2f}")
    bad = sum(result[k] for k in ("lost", "paid twice", "stuck", "wrong results", "nonce gaps"))
    if bad:
        for slot, log in workers.logs.items():
            print(f"--- {log} (tail)", file=sys.stderr)
            print(open(log).read()[-1500:], file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
