#!/usr/bin/env python3
"""Driver of tests/bench/e2e_latency.sh (read that script first): makes upstream changes in
the simulator and times each one into its production row.

  e2e_latency.py measure --sim URL --db URL --every S --changes N --per-period K --seed X --out F
      waits for the initial sync, then makes N changes (one record each, entities in turn) at
      random moments spread uniformly over ceil(N/K) schedule periods, and for each one records
        t_change  wall clock just before the simulator was asked to change the record
        fetched   the production row's fetched_at: when the fetcher held the response that
                  carried the change (the page's fetched_at, set right after the request)
        staged    the staging row's created_at: the start of the stager's transaction
        commit    the commit time of the transaction that wrote the new version
                  (pg_xact_commit_timestamp; the script turns track_commit_timestamp on)
        seen      when this driver's poll (every 20 ms) first saw it
  e2e_latency.py bare --sim URL --db URL --changes N --client ID:SECRET --out F
      with ingestd stopped: the same kind of change, then one GraphQL request for the changed
      records (token fetched beforehand, as a client would cache it) and one autocommitted
      upsert: the floor of any pipeline that copies the change, with no schedule and no stages
  e2e_latency.py report MEASURE BARE EVERY_S
      prints the figures and RESULT lines (tests/bench/run_all.sh collects them)

Only the standard library: psql (one long-lived process per connection) and urllib.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
import urllib.request

ENTITIES = [  # entity, production table, GraphQL root field
    ("clients", "clients", "allClients"),
    ("pianos", "pianos", "allPianos"),
    ("users", "users", "allUsers"),
    ("timeline_entries", "timeline_entries", "allTimelineEntries"),
    ("invoices", "invoices", "allInvoices"),
]


class Psql:
    """One psql process kept open: a query is a line of SQL, its end an \\echo marker."""

    def __init__(self, url):
        self.p = subprocess.Popen(
            ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def query(self, sql):
        self.p.stdin.write(sql.strip().rstrip(";") + ";\n\\echo __end__\n")
        self.p.stdin.flush()
        rows = []
        for line in self.p.stdout:
            line = line.rstrip("\n")
            if line == "__end__":
                return rows
            if line:
                rows.append(line.split("|"))
        raise RuntimeError(f"psql exited ({self.p.wait()}) on: {sql[:200]}")

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def http(url, body=None, headers=None, form=False):
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        if form:
            data = body.encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=hdrs, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def mutate(sim, entity):
    ids = http(f"{sim}/control/mutate", {"entity": entity, "op": "update", "count": 1})["ids"]
    if len(ids) != 1:
        sys.exit(f"e2e_latency: mutate {entity} returned {ids}")
    return ids[0]


def alive(pid):
    if pid:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit(f"e2e_latency: ingestd (pid {pid}) is gone; see its log")


def wait_initial_sync(sim, db, timeout, pid):
    upstream = http(f"{sim}/control/stats")["records"]
    deadline = time.time() + timeout
    while True:
        missing = []
        for entity, table, _ in ENTITIES:
            n = int(db.query(f"SELECT count(*) FROM {table} WHERE NOT is_placeholder")[0][0])
            if n != upstream[entity]:
                missing.append(f"{entity} {n}/{upstream[entity]}")
            waiting = int(db.query(f"SELECT count(*) FROM stg_{entity} WHERE NOT processed")[0][0])
            if waiting:
                missing.append(f"stg_{entity} {waiting} waiting")
        if not missing:
            return sum(upstream[e] for e, _, _ in ENTITIES)
        alive(pid)
        if time.time() > deadline:
            sys.exit("e2e_latency: initial sync incomplete after %d s: %s" % (timeout, ", ".join(missing)))
        time.sleep(0.5)


def poll(db, pending, done):
    """Moves every pending change whose new version is committed from `pending` to `done`."""
    by_table = {}
    for rec in pending.values():
        by_table.setdefault(rec["table"], []).append(rec["id"])
    parts = []
    for table, ids in by_table.items():
        quoted = ",".join("'" + i + "'" for i in ids)
        parts.append(
            f"SELECT t.id, extract(epoch FROM t.fetched_at), "
            f"extract(epoch FROM pg_xact_commit_timestamp(t.xmin)), t.version, "
            f"(SELECT extract(epoch FROM s.created_at) FROM stg_{table} s "
            f"WHERE s.content_hash = t.content_hash) FROM {table} t "
            f"WHERE t.id IN ({quoted}) AND t.version >= 2")
    if not parts:
        return
    rows = db.query(" UNION ALL ".join(parts))
    seen = time.time()
    for rid, fetched, commit, version, staged in rows:
        rec = pending.pop(rid, None)
        if rec is None:
            continue
        rec.update(fetched=float(fetched), commit=float(commit), seen=seen, version=int(version),
                   staged=float(staged))
        done.append(rec)


def measure(a):
    db = Psql(a.db)
    t = time.time()
    records = wait_initial_sync(a.sim, db, a.timeout, a.pid)
    initial = time.time() - t
    rng = random.Random(a.seed)
    periods = math.ceil(a.changes / a.per_period)
    window = periods * a.every
    offsets = sorted(rng.uniform(0, window) for _ in range(a.changes))
    start = time.time() + 1.0
    pending, done, used = {}, [], set()
    for i, off in enumerate(offsets):
        entity, table, _ = ENTITIES[i % len(ENTITIES)]
        at = start + off
        while True:
            now = time.time()
            if now >= at:
                break
            if pending:
                poll(db, pending, done)
            time.sleep(min(0.02, max(0.0, at - time.time())))
        t_change = time.time()
        rid = mutate(a.sim, entity)
        if rid in used:
            sys.exit(f"e2e_latency: record {rid} changed twice; use a larger --size")
        used.add(rid)
        pending[rid] = {"i": i, "entity": entity, "table": table, "id": rid, "t_change": t_change,
                        "offset": off}
    deadline = time.time() + a.every + 120
    while pending and time.time() < deadline:
        alive(a.pid)
        poll(db, pending, done)
        time.sleep(0.02)
    db.close()
    out = {"changes": a.changes, "every": a.every, "periods": periods, "window": window,
           "records": records, "initial_sync_s": initial, "done": done,
           "missing": list(pending.values())}
    json.dump(out, open(a.out, "w"), indent=1)
    if pending:
        sys.exit(f"e2e_latency: {len(pending)} of {a.changes} changes never reached production: "
                 + ", ".join(r["id"] for r in list(pending.values())[:10]))


def bare(a):
    db = Psql(a.db)
    client_id, secret = a.client.split(":", 1)
    token = http(f"{a.sim}/oauth/token",
                 f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}",
                 form=True)["access_token"]
    for entity, _, _ in ENTITIES:
        db.query(f"CREATE TABLE IF NOT EXISTS bare_{entity} (id text PRIMARY KEY, raw_data jsonb, "
                 f"updated_at timestamptz)")
    out = []
    for i in range(a.changes):
        entity, _, root = ENTITIES[i % len(ENTITIES)]
        # The client's watermark, read before the clock starts (a client keeps it in memory).
        since = http(f"{a.sim}/control/ids?entity={entity}")["max_updated_at"]
        t0 = time.time()
        rid = mutate(a.sim, entity)
        t1 = time.time()
        query = (f"query($first: Int!, $after: String, $since: DateTime) {{ {root}(first: $first, "
                 f"after: $after, filters: {{updatedSince: $since}}) {{ pageInfo {{ hasNextPage "
                 f"endCursor }} edges {{ node {{ id updatedAt }} }} }} }}")
        body = http(f"{a.sim}/graphql", {"query": query, "variables": {"first": 100, "after": None,
                                                                        "since": since}},
                    headers={"Authorization": f"Bearer {token}"})
        t2 = time.time()
        nodes = [e["node"] for e in body["data"][root]["edges"]]
        if rid not in {n["id"] for n in nodes}:
            sys.exit(f"e2e_latency: bare fetch of {entity} since {since} misses {rid}")
        doc = json.dumps(nodes).replace("$bare$", "")
        db.query(f"INSERT INTO bare_{entity} (id, raw_data, updated_at) "
                 f"SELECT n ->> 'id', n, (n ->> 'updatedAt')::timestamptz "
                 f"FROM jsonb_array_elements($bare${doc}$bare$::jsonb) n "
                 f"ON CONFLICT (id) DO UPDATE SET raw_data = EXCLUDED.raw_data, "
                 f"updated_at = EXCLUDED.updated_at")
        t3 = time.time()
        out.append({"entity": entity, "id": rid, "latency": t3 - t0, "mutate": t1 - t0,
                    "fetch": t2 - t1, "upsert": t3 - t2, "records": len(nodes)})
    db.close()
    json.dump(out, open(a.out, "w"), indent=1)


def pct(values, p):
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def report(a):
    m = json.load(open(a.measure))
    b = json.load(open(a.bare))
    every = m["every"]
    done = sorted(m["done"], key=lambda r: r["i"])
    lat = [r["commit"] - r["t_change"] for r in done]
    wait = [r["fetched"] - r["t_change"] for r in done]
    pipe = [r["commit"] - r["fetched"] for r in done]
    to_stg = [r["staged"] - r["fetched"] for r in done]
    to_prod = [r["commit"] - r["staged"] for r in done]
    lag = [r["seen"] - r["commit"] for r in done]
    bl = [r["latency"] for r in b]
    n = len(done)
    print(f"\ne2e latency benchmark: {n} changes over {m['periods']} schedule periods "
          f"(schedule.every {every:g} s, {m['window']:.0f} s window), {m['records']:,} records "
          f"upstream (initial sync {m['initial_sync_s']:.1f} s)")
    fmt = "  {:46s} p50 {:7.3f} s  p99 {:7.3f} s  max {:7.3f} s  mean {:7.3f} s"
    print(fmt.format("latency: change -> production commit", pct(lat, 50), pct(lat, 99), max(lat),
                     sum(lat) / n))
    print(fmt.format("  of it: change -> the fetch that saw it", pct(wait, 50), pct(wait, 99),
                     max(wait), sum(wait) / n))
    print(fmt.format("  of it: that fetch -> production commit", pct(pipe, 50), pct(pipe, 99),
                     max(pipe), sum(pipe) / n))
    print(fmt.format("    fetch -> staging (spool, stager)", pct(to_stg, 50), pct(to_stg, 99),
                     max(to_stg), sum(to_stg) / n))
    print(fmt.format("    staging -> production (reconciler)", pct(to_prod, 50), pct(to_prod, 99),
                     max(to_prod), sum(to_prod) / n))
    print(fmt.format(f"bare GraphQL request + upsert ({len(bl)} changes)", pct(bl, 50), pct(bl, 99),
                     max(bl), sum(bl) / len(bl)))
    print(f"  driver poll lag (commit -> seen): max {max(lag) * 1000:.0f} ms; fetch -> commit "
          f"minimum {min(pipe) * 1000:.0f} ms")
    r50, r99 = pct(lat, 50) / pct(wait, 50), pct(lat, 99) / pct(wait, 99)
    print(f"  latency / schedule wait alone: p50 {r50:.2f}, p99 {r99:.2f} "
          f"(1.00 = the pipeline adds nothing to the wait the schedule imposes)")
    print(f"  pipeline / bare request + upsert: p50 {pct(pipe, 50) / pct(bl, 50):.0f}x")
    # Seeds: fresh data < 5 minutes after an upstream change; ours: seconds past the schedule,
    # bounded by the poll intervals (staging 2 s + reconciler 1 s by default).
    bound = 3.0
    ok99 = pct(lat, 99) <= every + bound
    okp = pct(pipe, 99) <= bound

    def result(figure, value, unit, ref, ref_what, ratio, ratio_what, target, met):
        fields = {"bench": "e2e", "figure": figure, "value": f"{value:.3f}", "unit": unit,
                  "ref": f"{ref:.3f}", "ref_what": ref_what,
                  "ratio": f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.2f}",
                  "ratio_what": ratio_what, "target": target, "met": met}
        print("RESULT " + " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items()))

    result("latency p50", pct(lat, 50), "s", pct(wait, 50),
           f"schedule wait alone p50 (every {every:g} s)", r50, "latency/wait", "", "")
    result("latency p99", pct(lat, 99), "s", pct(wait, 99),
           f"schedule wait alone p99 (every {every:g} s)", r99, "latency/wait",
           f"<= every + {bound:g} s", "yes" if ok99 else "NO")
    result("pipeline p50 (fetch -> production)", pct(pipe, 50), "s", pct(bl, 50),
           "bare GraphQL request + upsert p50", pct(pipe, 50) / pct(bl, 50), "pipeline/bare", "",
           "")
    result("pipeline p99 (fetch -> production)", pct(pipe, 99), "s", pct(bl, 99),
           "bare GraphQL request + upsert p99", pct(pipe, 99) / pct(bl, 99), "pipeline/bare",
           f"<= {bound:g} s", "yes" if okp else "NO")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--sim", required=True)
    m.add_argument("--db", required=True)
    m.add_argument("--every", type=float, required=True)
    m.add_argument("--changes", type=int, default=100)
    m.add_argument("--per-period", type=int, default=10)
    m.add_argument("--seed", type=int, default=7)
    m.add_argument("--timeout", type=float, default=600)
    m.add_argument("--out", required=True)
    m.add_argument("--pid", type=int, default=0, help="ingestd's pid: stop early if it dies")
    b = sub.add_parser("bare")
    b.add_argument("--sim", required=True)
    b.add_argument("--db", required=True)
    b.add_argument("--changes", type=int, default=20)
    b.add_argument("--client", required=True)
    b.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("measure")
    r.add_argument("bare")
    a = p.parse_args()
    {"measure": measure, "bare": bare, "report": report}[a.cmd](a)


if __name__ == "__main__":
    main()
