#!/usr/bin/env python3
"""The checks of tests/deploy/observability_test.sh that talk to Prometheus.

Given a Prometheus that scrapes `ingestd run` (job "ingestd") after a completed sync and has
loaded deploy/prometheus/ingestd-alerts.yml, it checks that:
  - the dashboard is a Grafana 10 import (schema, __inputs/__requires, the variables, the data
    source of every panel, unique ids, a grid without overlaps);
  - every rule group of the file is loaded and every rule evaluates (health "ok"), with a
    severity, a summary, a description and a runbook_url whose anchor is a heading in
    docs/OPERATIONS.md;
  - every metric name that a dashboard or rule expression uses is one Prometheus scraped;
  - every expression (dashboard targets and annotations, variable queries' metrics, rules)
    evaluates without error through /api/v1/query, and each dashboard target returns a
    sample that is a number (not NaN) after the sync, except the ones listed in MAY_BE_EMPTY;
  - on the healthy sync no alert is active but IngestdPlaceholdersOpenLong (pending: the
    simulator's dangling references leave placeholders open);
  - a file dropped into incoming/pianos/ that is not a spool document makes
    IngestdQuarantinedFiles fire for pianos, and the dashboard's health stat shows pianos
    degraded.
Only the Python standard library: the Debian python3 has no YAML module, so the rules are read
back from Prometheus's API, which is also what proves they loaded.

Usage: observability_check.py PROMETHEUS_URL DASHBOARD RULES OPERATIONS_MD SPOOL_DIR
"""
import json
import math
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# Dashboard expressions allowed to return nothing after a healthy sync. Every other target
# must return a number: a new panel is checked without anyone remembering to list it.
MAY_BE_EMPTY = {
    # The annotation shows firing alerts; on a healthy sync there are none.
    'ALERTS{alertname=~"Ingestd.*", alertstate="firing"}',
}
# Alerts allowed to be active (pending or firing) after the healthy sync.
HEALTHY_ACTIVE = {"IngestdPlaceholdersOpenLong"}
# Rule expressions that must return data after the sync (the others are conditions that are
# false on a healthy pipeline; the quarantine step below makes one of them true).
RULES_WITH_DATA = {"IngestdPlaceholdersOpenLong"}

RUNBOOK_BASE = "https://github.com/OWNER/ingestd/blob/main/docs/OPERATIONS.md#"
SEVERITIES = {"critical", "warning", "info"}
# Grafana's built-in intervals, as a dashboard with a 1 s scrape interval would get them.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m", "__range_s": "300"}
DEADLINE_S = 120

failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL: {msg}", file=sys.stderr)


def die(msg):
    fail(msg)
    sys.exit(1)


class Prometheus:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def get(self, path, **params):
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:  # 400/422: the API's error document
            body = e.read().decode("utf-8", "replace")
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "error": f"HTTP {e.code}: {body[:300]}"}

    def query(self, expr):
        """(error or None, samples); each sample (labels, float value)."""
        doc = self.get("/api/v1/query", query=expr)
        if doc.get("status") != "success":
            return doc.get("error", json.dumps(doc)), []
        data = doc["data"]
        if data["resultType"] == "scalar":
            return None, [({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            return f"unexpected result type {data['resultType']}", []
        return None, [(s["metric"], float(s["value"][1])) for s in data["result"]]


def poll(what, check, deadline_s=DEADLINE_S, interval=0.5):
    """Calls check() until it returns a true value; fails with `what` at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            die(f"gave up waiting ({deadline_s}s): {what}")
        time.sleep(interval)


def github_anchor(heading):
    """The id GitHub gives a Markdown heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def substitute(expr, variables):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in variables:
            return ".+"  # "All": a regex that matches every value
        fail(f"unknown variable ${name} in {expr}")
        return m.group(0)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def metric_names(expr):
    # Strip strings (label values) first, then take identifiers that are ingestd metrics.
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(ingestd_[a-z0-9_]+|up)\b(?!\s*\()", bare))


def check_dashboard(dash):
    """Static checks; returns [(where, expr)] of every PromQL expression in it."""
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 38:
        fail(f"dashboard schemaVersion {dash.get('schemaVersion')} < 38 (Grafana 10)")
    inputs = {i.get("name"): i for i in dash.get("__inputs", [])}
    if inputs.get("DS_PROMETHEUS", {}).get("pluginId") != "prometheus":
        fail("dashboard __inputs has no DS_PROMETHEUS input of plugin prometheus")
    requires = {(r.get("type"), r.get("id")): r for r in dash.get("__requires", [])}
    grafana = requires.get(("grafana", "grafana"), {}).get("version", "0")
    if int(grafana.split(".")[0]) < 10:
        fail(f"__requires names Grafana {grafana}, not 10+")
    if ("datasource", "prometheus") not in requires:
        fail("__requires does not name the prometheus data source")
    if not dash.get("uid") or not dash.get("title"):
        fail("dashboard has no uid or title")

    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds_var = [n for n, v in variables.items() if v.get("type") == "datasource"]
    if not ds_var or variables[ds_var[0]].get("query") != "prometheus":
        fail("no datasource variable of type prometheus")
    allowed_uids = {"${DS_PROMETHEUS}"} | {f"${{{n}}}" for n in ds_var} | {f"${n}" for n in ds_var}
    exprs = []
    ent = variables.get("entity")
    if not ent:
        fail("no template variable 'entity'")
    else:
        q = ent.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"label_values\((ingestd_\w+),\s*entity\)", q.strip())
        if not m:
            fail(f"variable entity is not label_values(<ingestd metric>, entity): {q!r}")
        if not (ent.get("multi") and ent.get("includeAll")):
            fail("variable entity must be multi-value and include All")
    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"label_values\((\w+),\s*\w+\)", q.strip())
        if m:
            exprs.append((f"variable {name}", m.group(1)))
        else:
            fail(f"variable {name}: query {q!r} is not label_values(metric, label)")

    types_used = set()
    ids = set()
    boxes = []
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    for p in walk(dash.get("panels", [])):
        pid, title = p.get("id"), p.get("title", "")
        if pid in ids:
            fail(f"panel id {pid} used twice")
        ids.add(pid)
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24 or g.get("w", 0) <= 0 or g.get("h", 0) <= 0:
            fail(f"panel {title!r}: gridPos {g} outside the 24-column grid")
        for (other, og) in boxes:
            if (g["x"] < og["x"] + og["w"] and og["x"] < g["x"] + g["w"]
                    and g["y"] < og["y"] + og["h"] and og["y"] < g["y"] + g["h"]):
                fail(f"panels {title!r} and {other!r} overlap")
        boxes.append((title, g))
        if p.get("type") == "row":
            continue
        types_used.add(p.get("type"))
        if not title:
            fail(f"panel {pid} has no title")
        if p.get("datasource", {}).get("uid") not in allowed_uids:
            fail(f"panel {title!r}: data source {p.get('datasource')} is not the dashboard's")
        refs = set()
        targets = p.get("targets", [])
        if not targets:
            fail(f"panel {title!r} has no query")
        for t in targets:
            if t.get("refId") in refs:
                fail(f"panel {title!r}: refId {t.get('refId')} twice")
            refs.add(t.get("refId"))
            if not t.get("expr"):
                fail(f"panel {title!r} {t.get('refId')}: no expr")
                continue
            exprs.append((f"panel {title!r} {t['refId']}", t["expr"]))
    for t in types_used:
        if ("panel", t) not in requires:
            fail(f"__requires does not list panel type {t}")
    for a in dash.get("annotations", {}).get("list", []):
        if a.get("expr"):
            exprs.append((f"annotation {a.get('name')!r}", a["expr"]))
    return [(w, substitute(e, variables), e) for w, e in exprs]


def check_rules(api, rules_path, operations_md):
    """The loaded groups against the file; returns [(alert name, expr)]."""
    text = open(rules_path, encoding="utf-8").read()
    file_groups = re.findall(r"^\s*-\s*name:\s*(\S+)\s*$", text, re.M)
    file_alerts = re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", text, re.M)
    anchors = {github_anchor(h) for h in
               re.findall(r"^#{1,6}\s+(.+?)\s*$", open(operations_md, encoding="utf-8").read(), re.M)}

    def loaded():
        doc = api.get("/api/v1/rules")
        if doc.get("status") != "success":
            return None
        groups = doc["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        # Every rule evaluated at least once, without error.
        if len(rules) != len(file_alerts) or any(r.get("health") != "ok" for r in rules):
            return None
        return groups
    groups = poll("every rule of the file loaded and evaluated with health ok "
                  f"({len(file_alerts)} rules)", loaded)
    names = [g["name"] for g in groups]
    if sorted(names) != sorted(file_groups):
        fail(f"rule groups loaded {names}, file has {file_groups}")
    out = []
    seen = set()
    for g in groups:
        for r in g["rules"]:
            name = r["name"]
            if r.get("type") != "alerting":
                fail(f"rule {name}: not an alerting rule")
            if name in seen:
                fail(f"alert {name} defined twice")
            seen.add(name)
            if r.get("labels", {}).get("severity") not in SEVERITIES:
                fail(f"alert {name}: severity label {r.get('labels', {}).get('severity')!r} "
                     f"not one of {sorted(SEVERITIES)}")
            ann = r.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                if not ann.get(key):
                    fail(f"alert {name}: no {key} annotation")
            url = ann.get("runbook_url", "")
            if url != RUNBOOK_BASE + name.lower():
                fail(f"alert {name}: runbook_url {url!r} is not {RUNBOOK_BASE + name.lower()}")
            if name.lower() not in anchors:
                fail(f"alert {name}: docs/OPERATIONS.md has no heading with anchor #{name.lower()}")
            out.append((name, r["query"]))
    if sorted(seen) != sorted(file_alerts):
        fail(f"alerts loaded {sorted(seen)}, file has {sorted(file_alerts)}")
    return out


def has_number(samples):
    return any(not math.isnan(v) for _, v in samples)


def main():
    prom_url, dashboard_path, rules_path, operations_md, spool = sys.argv[1:6]
    api = Prometheus(prom_url)

    dash = json.load(open(dashboard_path, encoding="utf-8"))
    dash_exprs = check_dashboard(dash)

    # The db-derived counters appear from the monitor's second snapshot on: wait for them, so
    # that every series the rules and panels use is there to be found.
    poll("Prometheus scraped ingestd (up == 1) with the run totals",
         lambda: has_number(api.query('up{job="ingestd"} == 1')[1])
         and api.query("ingestd_runs_total")[1])

    rule_exprs = check_rules(api, rules_path, operations_md)

    # Metric names: every one the expressions use is one Prometheus has scraped.
    doc = api.get("/api/v1/label/__name__/values")
    scraped = set(doc.get("data", []))
    used = set()
    for _, e, _ in dash_exprs:
        used |= metric_names(e)
    for _, e in rule_exprs:
        used |= metric_names(e)
    for name in sorted(used - scraped):
        fail(f"metric {name} is used but Prometheus never scraped it")

    # Evaluate everything: an error is a broken expression, no retry. Then wait until each
    # expression that must have data has a number.
    all_exprs = [(w, e, raw) for w, e, raw in dash_exprs] + \
                [(f"rule {n}", e, e) for n, e in rule_exprs]
    for where, e, _ in all_exprs:
        err, _ = api.query(e)
        if err:
            fail(f"{where}: Prometheus refused {e!r}: {err}")
    if failures:
        sys.exit(1)
    must = [(w, e) for w, e, raw in dash_exprs if raw not in MAY_BE_EMPTY and not w.startswith("variable")]
    must += [(w, e) for w, e in [(f"rule {n}", e) for n, e in rule_exprs] if w[5:] in RULES_WITH_DATA]
    # Variables: label_values needs the metric to have series.
    must += [(w, e) for w, e, _ in dash_exprs if w.startswith("variable")]
    pending = dict(must)
    end = time.monotonic() + DEADLINE_S
    while pending and time.monotonic() < end:
        for where, e in list(pending.items()):
            if has_number(api.query(e)[1]):
                del pending[where]
        if pending:
            time.sleep(1)
    for where, e in pending.items():
        fail(f"{where}: no data after the sync: {e}")
    with_data = sum(1 for _, e, _ in all_exprs if has_number(api.query(e)[1]))

    # The healthy sync raises no alert but the expected review item.
    def quiet():
        alerts = api.get("/api/v1/alerts")["data"]["alerts"]
        unexpected = [a for a in alerts if a["labels"]["alertname"] not in HEALTHY_ACTIVE]
        return not unexpected and alerts
    def active_names():
        return sorted({(a["labels"]["alertname"], a["state"]) for a in
                       api.get("/api/v1/alerts")["data"]["alerts"]})
    end = time.monotonic() + DEADLINE_S
    while not quiet():
        if time.monotonic() > end:
            fail(f"alerts active on a healthy sync: {active_names()}")
            break
        time.sleep(1)

    # Break pianos: a file that is not a spool document, written under a dot name and renamed
    # as the spool contract wants. The stager quarantines it.
    folder = os.path.join(spool, "incoming", "pianos")
    with open(os.path.join(folder, ".broken.json.tmp"), "w") as f:
        f.write("<html>502 Bad Gateway</html>")
    os.rename(os.path.join(folder, ".broken.json.tmp"), os.path.join(folder, "broken.json"))

    def quarantine_alert():
        for a in api.get("/api/v1/alerts")["data"]["alerts"]:
            if (a["labels"]["alertname"] == "IngestdQuarantinedFiles" and a["state"] == "firing"
                    and a["labels"].get("entity") == "pianos"):
                return a
        return None
    a = poll("IngestdQuarantinedFiles firing for pianos", quarantine_alert)
    if a["annotations"].get("summary") != "ingestd quarantined 1 spool files of pianos":
        fail(f"IngestdQuarantinedFiles summary: {a['annotations'].get('summary')!r}")
    health = [e for w, e, _ in dash_exprs if w.startswith("panel 'Entity health'")][0]
    poll("the dashboard's health stat shows pianos degraded",
         lambda: any(s[0].get("entity") == "pianos" and s[1] >= 1 for s in api.query(health)[1]))

    print(f"observability: {len(all_exprs)} expressions evaluated "
          f"({len(dash_exprs)} dashboard, {len(rule_exprs)} rules), {with_data} with data; "
          f"{len(must)} required to have data; {len(used)} metric names checked")
    if failures:
        print(f"observability: {len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
