#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test_grafana.py DASHBOARD METRICS_C [POOLD POOLCTL POOL_WORKER]: the
Grafana dashboard contrib/grafana/poold.json.

  - the JSON loads and has what Grafana needs: uid, title, schemaVersion,
    panels with unique ids, a type, a title and a place on the 24-column
    grid; every query panel reads a Prometheus datasource through the
    dashboard's datasource variable, and has targets with an expr and a
    unique refId;
  - every metric an expr names is one poold exports: a name of the table
    proto/pproto_metrics.c and, with the programs given, a family of
    `poolctl stats --prometheus` of a live poold (with a worker that holds
    memory and one that raises a warning, so that every family is there);
  - counters (_total) are read through rate() or increase(), and only
    counters are.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

dash_path, metrics_c = sys.argv[1:3]
progs = sys.argv[3:6]
failures = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def ok(msg):
    print("ok: " + msg, flush=True)


with open(dash_path) as f:
    dash = json.load(f)
ok("%s loads" % os.path.basename(dash_path))

# ---- schema basics ----
if not isinstance(dash.get("uid"), str) or not 0 < len(dash["uid"]) <= 40:
    fail("uid: %r (a string of 1 to 40 characters)" % dash.get("uid"))
if not isinstance(dash.get("title"), str) or not dash["title"]:
    fail("no title")
if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 30:
    fail("schemaVersion %r: want an integer >= 30" % dash.get("schemaVersion"))
tvars = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
dsvars = [n for n, v in tvars.items() if v.get("type") == "datasource" and
          v.get("query") == "prometheus"]
if not dsvars:
    fail("no datasource variable of type prometheus in templating")
panels = dash.get("panels")
if not isinstance(panels, list) or not panels:
    fail("no panels")
    panels = []
ids = [p.get("id") for p in panels]
if len(set(ids)) != len(ids) or not all(isinstance(i, int) for i in ids):
    fail("panel ids not unique integers: %s" % ids)
exprs = []
for p in panels:
    name = p.get("title") or "(untitled)"
    if not p.get("type") or not p.get("title"):
        fail("panel %s: no type or title" % p.get("id"))
    g = p.get("gridPos", {})
    if not all(isinstance(g.get(k), int) for k in "hwxy") or g["x"] + g["w"] > 24 or g["h"] < 1:
        fail("panel %s: gridPos %s is not on the 24-column grid" % (name, g))
    if p.get("type") == "row":
        continue
    ds = p.get("datasource") or {}
    if ds.get("type") != "prometheus" or ds.get("uid") not in ["${%s}" % v for v in dsvars]:
        fail("panel %s: datasource %s is not the dashboard's Prometheus variable" % (name, ds))
    targets = p.get("targets") or []
    if not targets:
        fail("panel %s: no targets" % name)
    refs = [t.get("refId") for t in targets]
    if len(set(refs)) != len(refs) or not all(refs):
        fail("panel %s: refIds %s" % (name, refs))
    for t in targets:
        if not t.get("expr"):
            fail("panel %s: a target without expr" % name)
        else:
            exprs.append((name, t["expr"]))
if not failures:
    ok("schema: uid %s, schemaVersion %d, %d panels, %d queries" %
       (dash["uid"], dash["schemaVersion"], len(panels), len(exprs)))

# ---- metric names ----
with open(metrics_c) as f:
    table = set(n for n in re.findall(r'"(poold_[a-z0-9_]+)"', f.read()) if not n.endswith("_"))
if len(table) < 50:
    fail("only %d names found in %s" % (len(table), metrics_c))
used = set()
for name, e in exprs:
    # Label selectors and strings out: what is left that starts with
    # poold_ is a metric name.
    bare = re.sub(r'\{[^}]*\}|"[^"]*"', "", e)
    for m in re.findall(r"\bpoold_[a-z0-9_]+\b", bare):
        # A histogram's series: name_bucket, name_sum, name_count.
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if base != m and base in table:
            m = base
        used.add(m)
        if m not in table:
            fail("panel %s: %s is not a metric of proto/pproto_metrics.c" % (name, m))
    for fn, m in re.findall(r"\b(rate|increase|irate)\((poold_[a-z0-9_]+)", bare):
        if not m.endswith("_total") and not re.search(r"_(bucket|sum|count)$", m):
            fail("panel %s: %s(%s): not a counter" % (name, fn, m))
    for m in set(re.findall(r"\bpoold_[a-z0-9_]+_total\b", bare)):
        if len(re.findall(r"\b%s\b" % m, bare)) != len(
                re.findall(r"\b(?:rate|increase|irate)\(%s\b" % m, bare)):
            fail("panel %s: counter %s read raw, not through rate() or increase()" % (name, m))
ok("%d metric names used, all in the table" % len(used))

# ---- against a live poold ----
if len(progs) == 3:
    poold, poolctl, worker = progs
    d = tempfile.mkdtemp(prefix="poold-graf-")
    sock = os.path.join(d, "poold.sock")
    shm = "/poold-graf-%d" % os.getpid()
    if os.path.exists("/dev/shm" + shm):
        sys.exit("/dev/shm%s exists already; not ours to remove" % shm)
    log = open(os.path.join(d, "log"), "w")
    pd = subprocess.Popen([poold, "--socket", sock, "--shm-name", shm, "--size", "16M"],
                          stdout=log, stderr=log)
    kids = []
    try:
        end = time.time() + 10
        while subprocess.run([poolctl, "-s", sock, "ping"], capture_output=True).returncode:
            if time.time() > end:
                sys.exit("poold did not start")
            time.sleep(0.05)
        for args in (["--leak", "50"], ["--double-free", "40", "--size", "100"],
                     ["--seconds", "30", "--iterations", "1000000", "--rounds", "50"]):
            kids.append(subprocess.Popen([worker, "--socket", sock, *args],
                                         stdout=subprocess.DEVNULL))
        live = set()
        end = time.time() + 10
        while time.time() < end:
            out = subprocess.run([poolctl, "-s", sock, "stats", "--prometheus"],
                                 capture_output=True, text=True).stdout
            live = set(re.findall(r"^# TYPE (\S+) ", out, re.M))
            if used <= live:
                break
            time.sleep(0.3)
        missing = used - live
        if missing:
            fail("not in a live poold's metrics: %s" % " ".join(sorted(missing)))
        else:
            ok("every metric the dashboard uses is in a live poold's output (%d families)" %
               len(live))
    finally:
        for k in kids:
            k.send_signal(signal.SIGTERM)
        for k in kids:
            try:
                k.wait(10)
            except subprocess.TimeoutExpired:
                k.kill()
                k.wait()
        pd.send_signal(signal.SIGTERM)
        try:
            pd.wait(10)
        except subprocess.TimeoutExpired:
            pd.kill()
            pd.wait()
        if os.path.exists("/dev/shm" + shm):
            os.unlink("/dev/shm" + shm)
        subprocess.run(["rm", "-rf", d])

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("the dashboard checks passed")
