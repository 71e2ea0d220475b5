#!/usr/bin/env python3
"""The retention benchmark's parsing and report (`scripts/bench retention`); stdlib only.

    python3 scripts/benchlib/retention.py vacuum < VACUUM-VERBOSE-OUTPUT    one JSON object
    python3 scripts/benchlib/retention.py explain < EXPLAIN-JSON            one JSON object
    python3 scripts/benchlib/retention.py report FIGURES OUT.json           tables; OUT.json

`vacuum` reads what `VACUUM (VERBOSE) crynux.jobs` writes (PostgreSQL 15) and keeps the first
relation's figures (the table, not its TOAST table): tuples removed, remaining, "dead but not yet
removable", how old the removable cutoff was, whether the indexes were vacuumed or bypassed, and
the elapsed seconds. `explain` reads `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`: execution ms,
shared buffers touched, and the scans of the plan. FIGURES holds lines `key<TAB>JSON`, the key
dotted (`after.sizes`); `report` nests them, prints the tables and writes them all to OUT.json.
"""

from __future__ import annotations

import json
import re
import sys
import time


def parse_vacuum(text: str) -> dict:
    out: dict = {}
    m = re.search(r"tuples: (\d+) removed, (\d+) remain, (\d+) are dead but not yet removable", text)
    if not m:
        raise SystemExit("no 'tuples:' line in the VACUUM (VERBOSE) output:\n" + text)
    out["removed"], out["remain"], out["not_yet_removable"] = (int(g) for g in m.groups())
    m = re.search(r"removable cutoff: (\d+), which was (\d+) XIDs old", text)
    if m:
        out["cutoff_xid_age"] = int(m.group(2))
    m = re.search(r"index scan (bypassed|needed|not needed): (\d+) pages from table \(([\d.]+)% of total\) (?:have|had) (\d+) dead item identifiers", text)
    if m:
        out["index_scan"] = m.group(1)
        out["dead_item_pages_share"] = float(m.group(3)) / 100
        out["dead_item_ids"] = int(m.group(4))
    m = re.search(r"elapsed: ([\d.]+) s", text)
    if m:
        out["seconds"] = float(m.group(1))
    return out


def parse_explain(text: str) -> dict:
    top = json.loads(text)[0]
    scans: list[str] = []

    def walk(node: dict) -> None:
        if "Scan" in node["Node Type"]:
            scans.append(node["Node Type"] + (f" on {node['Index Name']}" if node.get("Index Name") else "")
                         + (f" ({node['Heap Fetches']} heap fetches)" if "Heap Fetches" in node else ""))
        for child in node.get("Plans", []):
            walk(child)

    walk(top["Plan"])
    return {"ms": top["Execution Time"], "rows": top["Plan"]["Actual Rows"],
            "buffers": top["Plan"]["Shared Hit Blocks"] + top["Plan"]["Shared Read Blocks"], "scans": scans}


def nest(path: str) -> dict:
    data: dict = {}
    for line in open(path):
        key, value = line.rstrip("\n").split("\t", 1)
        *parents, leaf = key.split(".")
        d = data
        for p in parents:
            d = d.setdefault(p, {})
        try:
            d[leaf] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"{path}: {key} is not JSON: {value!r}")
    return data


def size(n: float | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def count(n: float | None) -> str:
    return "" if n is None else f"{n:,.0f}"


def row(cells: list) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def report(figures: str, out_path: str) -> None:
    d = nest(figures)
    d["date"] = time.strftime("%Y-%m-%d")
    json.dump(d, open(out_path, "w"), indent=1)
    p = d["params"]
    cols = [d["before"], d["after"], d["prune"]]

    def dash(name: str, c: dict) -> str:
        q = c.get("dashboard", {}).get(name)
        return "" if q is None else f"{q['ms']:.1f} ms, {q['buffers']:,} buffers; {', '.join(q['scans'])}"

    def claim(c: dict) -> str:
        cl = c.get("claim")
        return "" if not cl or not cl.get("calls") else f"{cl['mean_ms']:.3f} / {cl['max_ms']:.1f} ms ({cl['blocks_per_call']:.1f} buffers, {cl['calls']:,} claims)"

    def queue(c: dict) -> str:
        q = c.get("bench_queue")
        return "" if not q else f"{q['jobs_per_s']:.0f} ({q['jobs']:,} jobs in {q['seconds']:.1f} s)"

    print(f"\n== retention: sizes, step by step (pg_relation_size; the heap and indexes of crynux.jobs)\n")
    row(["step", "finished jobs", "pending jobs", "jobs_due_idx", "jobs_finished_idx", "heap", "crynux.jobs with indexes and TOAST"])
    row(["---"] * 7)
    steps = [(f"table emptied (TRUNCATE), {p['backlog']:,} pending jobs", d["before"]["sizes"]),
             (f"bench-queue --jobs {p['queue_jobs']:,} ran (the backlog drained with them)", d["before"]["sizes_after_run"]),
             (f"{p['finished']:,} finished jobs inserted, VACUUM ANALYZE", d["history"]["sizes"]),
             (f"{p['backlog']:,} pending jobs again", d["after"]["sizes"]),
             (f"bench-queue --jobs {p['queue_jobs']:,} ran again", d["after"]["sizes_after_run"]),
             (f"prune {d['prune']['flags']}, VACUUM", d["prune"]["sizes"])]
    for label, z in steps:
        row([label, count(z["finished"]), count(z["pending"]), size(z["due_idx"]), size(z["finished_idx"]), size(z["heap"]), size(z["total"])])

    print(f"\n== retention: claims and the dashboard's reads, without and with {p['finished']:,} finished jobs\n")
    row(["", "no history", f"{p['finished']:,} finished jobs added", "after prune"])
    row(["---"] * 4)
    row([f"bench-queue --jobs {p['queue_jobs']:,} --concurrency 4 after a backlog of {p['backlog']:,}: jobs/s"] + [queue(c) for c in cols])
    row(["claim statement: mean / max (pg_stat_statements)"] + [claim(c) for c in cols])
    row(["dashboard: finished counts, all time"] + [dash("finished_all", c) for c in cols])
    row(["dashboard: finished counts, last hour"] + [dash("finished_hour", c) for c in cols])
    row(["dashboard: latest 15 failures"] + [dash("failures", c) for c in cols])
    h, pr = d["history"], d["prune"]
    hv = h.get("vacuum", {})
    print(f"\nadding the history: one INSERT ... SELECT generate_series of {p['finished']:,} rows {h['insert_s']:.1f} s, "
          f"then VACUUM ANALYZE {h['vacuum_analyze_s']:.1f} s (index vacuuming {hv.get('index_scan', '?')}: "
          f"{hv.get('dead_item_pages_share', 0) * 100:.2f} % of the pages held {hv.get('dead_item_ids', 0):,} dead item identifiers)")
    print(f"`crynux-worker prune {pr['flags']}`: {pr['output']} in {pr['seconds']:.1f} s "
          f"({pr['jobs'] / max(pr['seconds'], 1e-9):,.0f} jobs/s); VACUUM afterwards {pr['vacuum'].get('seconds', 0):.1f} s, "
          f"{pr['vacuum']['removed']:,} tuples removed (the rest pruned on the way)")

    c = d["churn"]
    cases = [k for k in ("none", "primary", "replica") if k in c]
    label = {"none": "no long transaction", "primary": "on the primary",
             "replica": f"on the replica (hot_standby_feedback {c.get('hot_standby_feedback', '?')})"}
    print(f"\n== a REPEATABLE READ transaction that read crynux.jobs stays open while bench-queue runs "
          f"{p['churn_jobs']:,} jobs; then VACUUM (VERBOSE) crynux.jobs on the primary\n")
    row(["the analyst's transaction"] + [label[k] for k in cases])
    row(["---"] * (len(cases) + 1))

    def upd(k: str) -> str:
        b, a = c[k]["stats_before"], c[k]["stats_after_run"]
        n, hot = a["n_tup_upd"] - b["n_tup_upd"], a["n_tup_hot_upd"] - b["n_tup_hot_upd"]
        return f"{n:,} ({hot / max(n, 1) * 100:.0f} % HOT)"

    row(["bench-queue jobs/s"] + [queue(c[k]) for k in cases])
    row(["claim statement: mean / max"] + [claim(c[k]) for k in cases])
    row(["row updates of crynux.jobs"] + [upd(k) for k in cases])
    row(["heap of crynux.jobs after the run (from empty)"] + [size(c[k]["sizes_after_run"]["heap"]) for k in cases])
    row(["jobs_due_idx after the run"] + [size(c[k]["sizes_after_run"]["due_idx"]) for k in cases])
    row(["n_dead_tup before VACUUM"] + [count(c[k]["stats_after_run"]["n_dead_tup"]) for k in cases])
    row(["VACUUM: removed / dead but not yet removable"]
        + [f"{c[k]['vacuum']['removed']:,} / {c[k]['vacuum']['not_yet_removable']:,}" for k in cases])
    row(["VACUUM: removable cutoff was (XIDs old)"] + [count(c[k]["vacuum"].get("cutoff_xid_age")) for k in cases])
    row(["n_dead_tup after VACUUM"] + [count(c[k]["stats_after_vacuum"]["n_dead_tup"]) for k in cases])
    row(["heap after VACUUM"] + [size(c[k]["sizes_after_vacuum"]["heap"]) for k in cases])
    if "primary" in c:
        pc = c["primary"]
        row(["after the analyst commits: VACUUM removed / not yet removable"]
            + [f"{pc['vacuum_after_commit']['removed']:,} / {pc['vacuum_after_commit']['not_yet_removable']:,}" if k == "primary" else ""
               for k in cases])
    if "replica" in c:
        rc = c["replica"]
        lag = rc.get("lag_after_run", {})
        row(["replica: WAL not yet replayed when the run ended"]
            + [f"{size(lag.get('bytes'))} (last replayed commit {lag.get('replayed_commit_age_s', 0):.1f} s old)" if k == "replica" else "" for k in cases])
        fate = rc.get("analyst", {})
        if lag.get("conflicts"):
            text = "ended by the replica during the run (conflict with recovery)"
        elif fate.get("still_open"):
            text = f"still open after {fate.get('open_s', 0):.0f} s, then committed"
        elif fate.get("replay_resumed_after_s") is not None:
            text = f"ended by the replica {fate['replay_resumed_after_s']:.0f} s after it began"
            said = [l.strip() for l in rc.get("analyst_psql_output", "").splitlines() if "conflict with recovery" in l or "DETAIL" in l]
            if said:
                text += ": " + " ".join(said)
        else:
            text = "ended before it was committed"
        conf = rc.get("conflicts", {})
        row(["replica: the analyst's transaction"] + [text if k == "replica" else "" for k in cases])
        row(["replica: queries and sessions it cancelled (snapshot / lock conflicts)"]
            + [f"{conf.get('snapshot', 0)} / {conf.get('lock', 0)}, of them the benchmark's own queries (retried): {rc.get('queries_cancelled', 0)}"
               if k == "replica" else "" for k in cases])
        if fate.get("replay_resumed_after_s") is None:
            row(["replica: replayed everything, after the transaction ended"]
                + [f"{rc.get('catch_up_s', 0):.1f} s" if k == "replica" else "" for k in cases])
    print(f"\nreplica settings: hot_standby_feedback {c.get('hot_standby_feedback', '?')}, "
          f"max_standby_streaming_delay {c.get('max_standby_streaming_delay', '?')}")
    print(f"\nJSON: {out_path}")


def main() -> int:
    if len(sys.argv) >= 2 and sys.argv[1] == "vacuum":
        print(json.dumps(parse_vacuum(sys.stdin.read())))
    elif len(sys.argv) >= 2 and sys.argv[1] == "explain":
        print(json.dumps(parse_explain(sys.stdin.read())))
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
