#!/usr/bin/env python3
"""Write docs/benchmarks.md (and docs/bench/*.png) from the files a bench/report.sh run wrote.

Every figure is read from a results file under target/*-bench/<ts>/:
  report-bench       the echo matrix (bench/report.sh), scenarios.jsonl, meta.json
  edge-bench         bench/edge.sh         session-bench      bench/session.sh
  compression-bench  bench/compression.sh  functions-bench    bench/functions.sh
  lambda-bench       bench/lambda.sh       fanout-bench       bench/fanout.sh
  cluster-bench      bench/cluster.sh
A scenario's results are the directory its run in this report made (scenarios.jsonl says
which); when that run was skipped or failed, the newest earlier results on the machine are
used and the section says so in bold.

Each section opens with where its figures come from: date, command, machine. Figures over
repeated runs are given as median (min–max). Every comparison with a peer is a ratio taken
pair by pair (switchboard's run k against the peer's run k, measured back to back) and
summarised as the median of those ratios with their range; the scoreboard near the top
lists them all and says plainly, with the reason, where switchboard is not ahead.

Usage: bench/report.py [--run target/report-bench/<ts>] [--out docs/benchmarks.md]
The charts go to bench/ beside the output file (docs/bench/ for the default).
Charts need matplotlib (scripts/install-deps.sh puts it into .venv); without it the report
is written without charts and says so.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    HAVE_MPL = True
except Exception:  # noqa: BLE001
    HAVE_MPL = False

TARGETS = {
    "echo": "gateway ≥ 85 % of ceiling-echo msgs/s",
    "idle": "≤ 8 KiB per connection at 15,000",
    "functions": "≥ 20× Pushpin throughput and ≤ 1/20 of its p50",
    "lambda": "warm overhead ≤ 300 µs at p50; throughput ≥ 5× serverless-offline",
    "fanout": "≥ 2× sockudo sustained deliveries/s",
    "cluster": "cross-node ≥ 50 % of same-node",
    "session-echo": "switchboard.v1 echo ≥ 0.9× plain msgs/s",
    "session-idle": "a resumable idle connection within 1 KiB of a plain one",
}


# ----------------------------------------------------------------------------- helpers
def read_jsonl(path):
    out = []
    if not path or not os.path.exists(path):
        return out
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def rel(p):
    return os.path.relpath(p, ROOT)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "–"
    if isinstance(x, float) and nd == 0 and abs(x) < 10 and x != int(x):
        nd = 2
    return f"{x:,.{nd}f}"


def mmm(xs, nd=0):
    """'median (min–max)' of the values, or the value alone when there is one."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    if len(xs) == 1:
        return f"{fmt(xs[0], nd)} (1 run)"
    return f"{fmt(med(xs), nd)} ({fmt(min(xs), nd)}–{fmt(max(xs), nd)})"


def pct(x):
    return "–" if x is None else f"{100 * x:.1f} %"


def times(x):
    return "–" if x is None else f"{x:.2f}×"


def pairs(a_runs, b_runs, key, fn=None):
    """a_runs / b_runs: dict run -> record. The ratio a/b for every run present in both."""
    out = []
    for r in sorted(set(a_runs) & set(b_runs), key=str):
        a, b = a_runs[r].get(key), b_runs[r].get(key)
        if fn:
            a, b = fn(a_runs[r]), fn(b_runs[r])
        if a is not None and b:
            out.append(a / b)
    return out


def ratio_cell(rs, as_pct=False):
    if not rs:
        return "–"
    f = pct if as_pct else times
    if len(rs) == 1:
        return f"{f(rs[0])} (1 pair)"
    return f"{f(med(rs))} (pairs {f(min(rs))}–{f(max(rs))}, n={len(rs)})"


def by_run(recs, key="run"):
    return {r.get(key): r for r in recs}


def conns_label(c):
    return f"{c:,} connection" + ("" if c == 1 else "s")


def per_msg_cpu(r, cpu="server_cpu_s", n="messages_total"):
    if r.get(cpu) is None or not r.get(n):
        return None
    return 1e6 * r[cpu] / r[n]


def bar_chart(path, title, labels, series, ylabel, log=False):
    """series: list of (name, values) aligned with labels."""
    if not HAVE_MPL or not labels:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels) + 2), 4))
    n = len(series)
    width = 0.8 / max(n, 1)
    for i, (name, vals) in enumerate(series):
        xs = [j + (i - (n - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [v if v is not None else 0 for v in vals], width, label=name)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=0, fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class Doc:
    def __init__(self, outdir, machine):
        self.lines = []
        self.outdir = outdir
        self.machine = machine
        self.targets = []  # (figure, value, met, why)
        self.scores = []  # (scenario, peer, figure, ratios, higher_is_better, why)

    def add(self, *ls):
        self.lines.extend(ls)

    def table(self, header, rows, align=None):
        self.add("| " + " | ".join(header) + " |")
        self.add("| " + " | ".join(align or ["---"] + ["---:"] * (len(header) - 1)) + " |")
        for r in rows:
            self.add("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
        self.add("")

    def chart(self, name, *args, **kw):
        p = bar_chart(os.path.join(self.outdir, name), *args, **kw)
        if p:
            self.add(f"![{args[0]}]({os.path.relpath(p, os.path.dirname(self.outdir))})", "")

    def target(self, figure, met, value, why=""):
        self.targets.append((figure, value, met, why))

    def score(self, scenario, peer, figure, ratios, higher_is_better, why):
        """A pair-by-pair comparison with a peer: ratios are switchboard / peer."""
        if ratios:
            self.scores.append((scenario, peer, figure, ratios, higher_is_better, why))


# Ratios this close to 1 are a tie: the runs' own spread is larger.
TIE = 0.01


def verdict(ratios, higher_is_better):
    """'yes', 'even' or 'no': whether switchboard is ahead on the median of the pairs."""
    m = med(ratios)
    if abs(m - 1) < TIE:
        return "even"
    return "yes" if (m > 1) == higher_is_better else "no"


# ----------------------------------------------------------------------------- provenance
SCEN = {}
RUN_START = None


def tz():
    return "UTC" if time.strftime("%Z") in ("UTC", "GMT") else time.strftime("%Z")


def dir_date(d):
    try:
        t = time.strptime(os.path.basename(d), "%Y%m%d-%H%M%S")
        return time.strftime("%Y-%m-%d %H:%M", t) + f" {tz()}", time.mktime(t)
    except ValueError:
        return "?", None


def results_dir(name):
    """This run's results of a scenario, or the newest earlier ones (and a note)."""
    st = SCEN.get(name)
    if st and st.get("results") and os.path.exists(os.path.join(st["results"], "results.jsonl" if name != "cluster" else "summary.md")):
        return st["results"], None
    kind = {"echo-matrix": "report"}.get(name, name)
    need = "summary.md" if kind != "report" else "results.jsonl"
    dirs = sorted(glob.glob(os.path.join(ROOT, "target", f"{kind}-bench", "*")))
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, need))]
    if not dirs:
        return None, None
    if not st:
        why = "this report's run of it was not made"
    elif st["status"] == "ok":
        why = "this report's run of it left no results directory"
    else:
        why = f"this report's run of it {st['status']}" + (f" ({st['note'].strip()})" if st.get("note") else "")
    return dirs[-1], why


def scenario_records(doc, name):
    """A section's opening: where a scenario's results come from (said in the document), and
    its results.jsonl records. (None, []) when it has none."""
    d, why = results_dir(name)
    provenance(doc, name, d, why)
    return d, read_jsonl(os.path.join(d, "results.jsonl")) if d else []


def provenance(doc, name, d, why, command=None):
    st = SCEN.get(name, {})
    if d is None:
        doc.add(f"**No results**: {why or 'the scenario has not run on this machine'}.", "")
        return
    date, _ = dir_date(d)
    cmd = command or st.get("command") or f"bench/{name}.sh"
    line = f"Measured {date} · command `{cmd}` · machine: {doc.machine} · results `{rel(d)}`"
    if why:
        line = f"**From an earlier run, not this report's** ({why}). " + line
        cmd_old = summary_command(d)
        if cmd_old:
            line += f" · that run's command: `{cmd_old}`"
    doc.add(line, "")


def summary_command(d):
    p = os.path.join(d, "summary.md")
    if not os.path.exists(p):
        return None
    for line in open(p):
        if "command" in line and "`" in line:
            parts = line.split("`")
            if len(parts) >= 3:
                return parts[1]
    return None


def embed_summary(doc, d, title="the script's own summary"):
    p = os.path.join(d, "summary.md") if d else None
    if p and os.path.exists(p):
        doc.add(f"<details><summary>{title} (`{rel(p)}`)</summary>", "")
        for line in open(p).read().splitlines():
            doc.add("#### " + line.lstrip("#").strip() if line.startswith("#") else line)
        doc.add("", "</details>", "")


# ----------------------------------------------------------------------------- 1. idle
def sec_idle(doc):
    doc.add("## 1. Idle connections: RSS per connection", "")
    d, recs = scenario_records(doc, "edge")
    if not d:
        return
    idle = [r for r in recs if r.get("phase") == "idle"]
    if not idle:
        doc.add("No idle results.", "")
        return
    steps = ", then ".join(f"{n:,}" for n in sorted({r["requested"] for r in idle}))
    doc.add(f"One fresh server per run; one loadgen opens the connections in steps ({steps}), "
            f"settling before each RSS reading; KiB/connection = (RSS − RSS before any connection) / connections. "
            f"Target: {TARGETS['idle']}.", "")
    rows, labels, gv, cv = [], [], [], []
    for n in sorted({r["requested"] for r in idle}):
        g = by_run([r for r in idle if r["target"] == "gateway" and r["requested"] == n])
        c = by_run([r for r in idle if r["target"] == "ceiling" and r["requested"] == n])
        rs = pairs(g, c, "kib_per_conn")
        opened = min([r.get("opened", 0) for r in list(g.values()) + list(c.values())] or [0])
        rows.append([f"{n:,}", f"{opened:,}", mmm([r.get("kib_per_conn") for r in g.values()], 2),
                     mmm([r.get("kib_per_conn") for r in c.values()], 2), ratio_cell(rs, True)])
        labels.append(f"{n:,}")
        gv.append(med([r.get("kib_per_conn") for r in g.values()]))
        cv.append(med([r.get("kib_per_conn") for r in c.values()]))
        doc.score("idle memory", "ceiling-echo", f"KiB/connection at {n:,} (lower is better)", rs, False,
                  "The gateway keeps per-connection state the bare library does not: the connection's id and registry "
                  "entry, its limits and route state, its outbound queue handle and a metrics handle.")
        if n == 15000 and g:
            k = med([r.get("kib_per_conn") for r in g.values()])
            doc.target("idle KiB/connection at 15,000", k <= 8, f"{k:.2f} KiB", "Per-connection state above the 8 KiB budget.")
    doc.table(["connections", "opened (min)", "switchboard KiB/conn", "ceiling-echo KiB/conn", "switchboard / ceiling (pair by pair)"],
              rows, ["---:", "---:", "---:", "---:", "---:"])
    doc.chart("idle.png", "Idle KiB per connection (median)", labels, [("switchboard", gv), ("ceiling-echo", cv)], "KiB")


# ----------------------------------------------------------------------------- 2. connect rate
def sec_connect(doc):
    doc.add("## 2. Connection rate", "")
    d, recs = scenario_records(doc, "edge")
    conn = [r for r in recs if r.get("phase") == "connect"]
    if conn:
        doc.add("`loadgen connect-rate`: workers open a connection (TCP + handshake until the 101), close it cleanly "
                "and repeat. `gateway` has no `$connect` route; `gateway, $connect → builtin echo` invokes the builtin echo "
                "for every handshake (its 200 accepts). The three servers run back to back in each round.", "")
        c = by_run([r for r in conn if r["target"] == "ceiling"])
        rows = []
        for t, name in (("gateway", "switchboard, no `$connect`"), ("gateway-connect", "switchboard, `$connect` → builtin echo"),
                        ("ceiling", "ceiling-echo")):
            rr = by_run([r for r in conn if r["target"] == t])
            if not rr:
                continue
            rs = pairs(rr, c, "conns_per_s") if t != "ceiling" else []
            rows.append([name, len(rr), mmm([r.get("conns_per_s") for r in rr.values()]),
                         mmm([r.get("handshake_p50_us") for r in rr.values()]),
                         mmm([r.get("handshake_p99_us") for r in rr.values()]),
                         mmm([per_msg_cpu(r, n="connections") for r in rr.values()], 1),
                         ratio_cell(rs, True) if t != "ceiling" else "", sum(r.get("errors") or 0 for r in rr.values())])
            if t != "ceiling":
                gcpu = med([per_msg_cpu(r, n="connections") for r in rr.values()])
                ccpu = med([per_msg_cpu(r, n="connections") for r in c.values()])
                doc.score("connection rate", "ceiling-echo", f"connections/s, {name}", rs, True,
                          f"Each gateway connection costs more CPU ({fmt(gcpu, 1)} vs {fmt(ccpu, 1)} µs here): the handshake is checked "
                          "against the limits, the connection gets an id, a registry entry, metrics, a task and an outbound queue"
                          + (", and `$connect` is invoked" if t == "gateway-connect" else "")
                          + "; the bare library skips all of it. On 2 cores shared with the load generator that CPU is the rate.")
        doc.table(["server", "runs", "connections/s", "handshake p50 µs", "handshake p99 µs", "server CPU µs/conn", "/ ceiling-echo (pair by pair)", "errors"],
                  rows, ["---"] + ["---:"] * 7)
    fd, fwhy = results_dir("functions")
    fc = [r for r in read_jsonl(os.path.join(fd, "results.jsonl")) if r.get("mode") == "connect"] if fd else []
    doc.add("Through an HTTP function, against Pushpin:", "")
    provenance(doc, "functions", fd, fwhy)
    if fc:
        doc.add("Both call the same trivial backend (`fn-backend`) when a connection opens and when it closes: switchboard's "
                "`$connect` and `$disconnect` routes go to an `http` function (its 200 accepts the handshake), Pushpin sends "
                "WebSocket-over-HTTP OPEN and CLOSE. Runs alternate.", "")
        s = by_run([r for r in fc if r["system"] == "switchboard"])
        p = by_run([r for r in fc if r["system"] == "pushpin"])
        rows = []
        for name, rr in (("switchboard, `$connect`/`$disconnect` → HTTP function", s), ("Pushpin (OPEN/CLOSE → HTTP)", p)):
            rows.append([name, len(rr), mmm([r.get("conns_per_s") for r in rr.values()]), mmm([r.get("handshake_p50_us") for r in rr.values()]),
                         mmm([r.get("handshake_p99_us") for r in rr.values()]), mmm([per_msg_cpu(r, "front_cpu_s", "connections") for r in rr.values()], 1),
                         sum(r.get("errors") or 0 for r in rr.values())])
        doc.table(["system", "runs", "connections/s", "handshake p50 µs", "handshake p99 µs", "gateway CPU µs/conn", "errors"], rows, ["---"] + ["---:"] * 6)
        rs = pairs(s, p, "conns_per_s")
        doc.add(f"- switchboard / Pushpin connections/s, pair by pair: {ratio_cell(rs)}", "")
        doc.score("connection rate, HTTP `$connect`", "Pushpin", "connections/s", rs, True,
                  "Pushpin's per-connection path crosses four processes (condure, pushpin-proxy, pushpin-handler, zurl) over ZeroMQ.")
    else:
        doc.add("No connection-rate results through a function.", "")


# ----------------------------------------------------------------------------- 3. echo matrix
def sec_matrix(doc, run_dir):
    doc.add("## 3. Echo: switchboard vs ceiling-echo, Node ws, Python websockets", "")
    d, why = results_dir("echo-matrix")
    if d is None and run_dir:
        d, why = run_dir, None
    recs = [r for r in read_jsonl(os.path.join(d, "results.jsonl")) if r.get("phase") == "echo-matrix"] if d else []
    provenance(doc, "echo-matrix", d if recs else None, why if recs else "no echo-matrix results in this run")
    if not recs:
        return
    runs = sorted({r["run"] for r in recs})
    secs = med([r.get("duration_s") for r in recs])
    targets = [t for t in ("gateway", "ceiling", "ws", "websockets") if any(r["target"] == t for r in recs)]
    labels_of = {t: next((r.get("label") for r in recs if r["target"] == t and r.get("label")), t) for t in targets}
    doc.add(f"Closed-loop echo (`loadgen echo`): each connection sends a text message and waits for its echo, checked byte for byte; "
            f"{fmt(secs, 1)} s measured per run, {len(runs)} rounds; in each cell the servers run back to back, the order rotated "
            f"cell by cell, all of them up for the whole matrix. Servers: "
            + "; ".join(f"`{t}` = {labels_of[t]}" for t in targets)
            + ". Node and Python are single-threaded by design; switchboard and ceiling-echo use a tokio worker per core. "
            f"Ratios are switchboard / peer, round by round. Target: {TARGETS['echo']}.", "")
    cells = sorted({(r["conns"], r["size_b"]) for r in recs})
    rows, chart_labels, series = [], [], {t: [] for t in targets}
    for c, s in cells:
        per = {t: by_run([r for r in recs if r["target"] == t and (r["conns"], r["size_b"]) == (c, s)]) for t in targets}
        g = per.get("gateway", {})
        for t in targets:
            rr = per[t]
            rs = pairs(g, rr, "msgs_per_s") if t != "gateway" else []
            rows.append([f"{c:,}", f"{s:,} B", t, mmm([r.get("msgs_per_s") for r in rr.values()]),
                         mmm([r.get("p50_us") for r in rr.values()]), mmm([r.get("p99_us") for r in rr.values()]),
                         fmt(med([per_msg_cpu(r) for r in rr.values()]), 2), ratio_cell(rs, True) if t != "gateway" else "",
                         sum(r.get("errors") or 0 for r in rr.values())])
            series[t].append(med([r.get("msgs_per_s") for r in rr.values()]))
            if t != "gateway" and rs:
                gcpu = med([per_msg_cpu(r) for r in g.values()])
                pcpu = med([per_msg_cpu(r) for r in rr.values()])
                if t == "ceiling":
                    whyt = (f"ceiling-echo is the same WebSocket library with nothing else; the gateway's routing, limits, metrics "
                            f"and outbound queue cost CPU (here {fmt(gcpu, 2)} vs {fmt(pcpu, 2)} µs per message), which on 2 cores "
                            "shared with the load generator comes straight out of throughput.")
                    doc.target(f"echo {conns_label(c)} × {s:,} B: gateway/ceiling", med(rs) >= 0.85, pct(med(rs)), whyt)
                elif c == 1:
                    whyt = (f"One connection is a latency-bound ping-pong; switchboard spent {fmt(gcpu, 2)} µs of CPU per message "
                            f"vs {fmt(pcpu, 2)} for {t}; the difference is the gateway's per-message work plus a cross-thread "
                            "hand-off between the socket task and the route.")
                else:
                    whyt = (f"switchboard spent {fmt(gcpu, 2)} µs of CPU per message vs {fmt(pcpu, 2)} for {t}.")
                doc.score("echo", {"ceiling": "ceiling-echo", "ws": "Node ws", "websockets": "Python websockets"}[t],
                          f"msgs/s, {conns_label(c)} × {s:,} B", rs, True, whyt)
        chart_labels.append(f"{c}×{s if s < 1024 else str(s // 1024) + 'K'}")
    doc.table(["conns", "size", "server", "msgs/s", "p50 µs", "p99 µs", "server CPU µs/msg (median)", "switchboard / this (pair by pair)", "errors"],
              rows, ["---:", "---:", "---"] + ["---:"] * 6)
    doc.add("- All echoes are uncompressed here (loadgen offers no permessage-deflate in this matrix; section 6 is about compression).", "")
    doc.chart("echo-matrix.png", "Echo msgs/s (median) by connections × size", chart_labels,
              [({"gateway": "switchboard", "ceiling": "ceiling-echo", "ws": "Node ws", "websockets": "Python websockets"}[t], series[t]) for t in targets],
              "msgs/s", log=True)


# ----------------------------------------------------------------------------- 4. functions
def sec_transports(doc, recs):
    """bench/functions.sh's transports (the same function over http/1.1, https/1.1, https/2,
    h2c; switchboard alone), when its run measured them."""
    runs = [r for r in recs if r.get("mode") == "transport"]
    failed = [r for r in recs if r.get("mode") == "transport-failed"]
    if not runs and not failed:
        return
    doc.add("### Transports to an HTTP function (switchboard alone)", "")
    doc.add("The same echo function reached over each transport, one gateway per variant, every variant once per round "
            "(rounds rotate the order); fn-backend runs hyper's server for all of them, with a test CA for https. "
            "Ratios are taken round by round.", "")
    variants = list(dict.fromkeys(r["variant"] for r in runs + failed))
    by = {v: by_run([r for r in runs if r["variant"] == v]) for v in variants}
    rows = []
    for v in variants:
        rr = by[v].values()
        if not rr:
            rows.append([v, 0, "**failed**", "", "", "", ""])
            continue
        rows.append([v, len(rr), mmm([r.get("msgs_per_s") for r in rr]), mmm([r.get("p50_us") for r in rr]),
                     mmm([r.get("p99_us") for r in rr]), fmt(med([per_msg_cpu(r, "gateway_cpu_s") for r in rr]), 1),
                     sum(r.get("errors") or 0 for r in rr)])
    doc.table(["variant", "runs", "msgs/s", "p50 µs", "p99 µs", "gateway CPU µs/invocation (median)", "errors"], rows,
              ["---"] + ["---:"] * 6)
    for a, b, least in (("https/1.1", "http/1.1", 0.8), ("https/2", "https/1.1", None), ("h2c", "http/1.1", None),
                        ("http/1.1", "http/1.1 (old)", 0.95), ("h2c", "h2c (old)", None)):
        tp = pairs(by.get(a, {}), by.get(b, {}), "msgs_per_s")
        if not tp:
            continue
        cpu = pairs(by[a], by[b], None, lambda r: per_msg_cpu(r, "gateway_cpu_s"))
        doc.add(f"- {a} ÷ {b}: msgs/s {ratio_cell(tp)}; gateway CPU per invocation {ratio_cell(cpu)}")
        if least:
            doc.target(f"function throughput {a} vs {b}", med(tp) >= least, f"{times(med(tp))} (target ≥ {least}×)",
                       "TLS costs the gateway CPU per request (record encryption, larger writes) on the cores it shares "
                       "with the load generator and the backend." if a.startswith("https") else
                       "Measured on 2 shared cores; a difference of a few % is within the spread of the runs.")
    for r in failed:
        doc.add(f"- **{r['variant']} failed**" + (f" in round {r['run']}" if "run" in r else "") + f": {r.get('reason', '?')}")
    doc.add("")


def sec_functions(doc):
    doc.add("## 4. Function round trip", "")
    doc.add("### Through an HTTP function: switchboard vs Pushpin", "")
    d, why = results_dir("functions")
    provenance(doc, "functions", d, why)
    if d:
        every_rec = read_jsonl(os.path.join(d, "results.jsonl"))
        every = [r for r in every_rec if r.get("mode") == "echo" and r.get("system")]
        if not every:
            doc.add("That run made no comparison with Pushpin.", "")
    if d and every:
        recs = [r for r in every if not r.get("reference")]
        refs = [r for r in every if r.get("reference")]
        backend = next((r.get("backend") for r in recs if r.get("backend")), "hyper")
        doc.add(f"Both systems call the same trivial echo function, `fn-backend` (`--server {backend}`), on loopback. "
                "The load generator, the gateway and this backend share the 2 cores, so the backend's CPU per request "
                "is part of every figure; fn-backend's `minimal` server (HTTP/1.1 written out in the benchmark, one "
                "write per answer) keeps that part small. The reference pair(s) after the runs swap in hyper's server "
                "in both backends, to show what the backend's own cost does to the ratio.", "")
        conns = sorted({r.get("connections") for r in recs})
        rows, labels, sv, pv = [], [], [], []
        for c in conns:
            s = by_run([r for r in recs if r["system"] == "switchboard" and r.get("connections") == c])
            p = by_run([r for r in recs if r["system"] == "pushpin" and r.get("connections") == c])
            for name, rr in (("switchboard, `http` function", s), ("Pushpin, WebSocket-over-HTTP", p)):
                rows.append([name, c, len(rr), mmm([r.get("msgs_per_s") for r in rr.values()]), mmm([r.get("p50_us") for r in rr.values()]),
                             mmm([r.get("p99_us") for r in rr.values()]),
                             fmt(med([per_msg_cpu(r, "front_cpu_s") for r in rr.values()]), 1),
                             sum(r.get("errors") or 0 for r in rr.values())])
            tp = pairs(s, p, "msgs_per_s")
            lat = pairs(s, p, "p50_us")
            doc.score("function round trip (HTTP)", "Pushpin", f"msgs/s, {conns_label(c)}", tp, True,
                      "Pushpin's path crosses four processes over ZeroMQ and makes one HTTP request per message.")
            doc.score("function round trip (HTTP)", "Pushpin", f"p50 latency, {conns_label(c)} (lower is better)", lat, False,
                      "In a closed loop p50 follows connections / throughput.")
            if tp and c == max(conns):
                doc.target(f"function throughput vs Pushpin ({conns_label(c)})", med(tp) >= 20, times(med(tp)),
                           "The echo backend and the load generator, which both systems need, share the 2 cores with the gateway, "
                           "so the throughput ratio stays below the gateway-CPU ratio.")
            if lat and c == max(conns):
                doc.target(f"function p50 vs Pushpin ({conns_label(c)})", med(lat) <= 0.05, f"{med(lat):.3f} (1/{1 / med(lat):.1f})",
                           "In a closed loop p50 is roughly connections / throughput, so it follows the throughput ratio.")
            labels.append(f"{c} conns")
            sv.append(med([r.get("msgs_per_s") for r in s.values()]))
            pv.append(med([r.get("msgs_per_s") for r in p.values()]))
            doc.add(f"- {c} connections, pair by pair: msgs/s switchboard / Pushpin {ratio_cell(tp)}; p50 switchboard / Pushpin {ratio_cell(lat)}")
        if refs:
            def backend_cpu(rs, system):
                return fmt(med([per_msg_cpu(r, "backend_cpu_s") for r in rs if r["system"] == system]), 1)

            rb = refs[0].get("backend", "?")
            rt = pairs(by_run([r for r in refs if r["system"] == "switchboard"]),
                       by_run([r for r in refs if r["system"] == "pushpin"]), "msgs_per_s")
            doc.add(f"- reference, both backends on `--server {rb}`: msgs/s switchboard / Pushpin {ratio_cell(rt)}; "
                    f"backend CPU µs per request behind switchboard {backend_cpu(refs, 'switchboard')} "
                    f"(`{backend}`: {backend_cpu(recs, 'switchboard')}), behind Pushpin {backend_cpu(refs, 'pushpin')} "
                    f"(`{backend}`: {backend_cpu(recs, 'pushpin')})")
        doc.add("")
        doc.table(["system", "conns", "runs", "msgs/s", "p50 µs", "p99 µs", "gateway CPU µs/msg (median)", "errors"], rows, ["---"] + ["---:"] * 7)
        doc.chart("functions.png", "HTTP function round trip msgs/s (median)", labels, [("switchboard", sv), ("Pushpin", pv)], "msgs/s")
    if d:
        sec_transports(doc, every_rec)
        embed_summary(doc, d)
    doc.add("### Through a managed Python (and Node) function: switchboard vs serverless-offline", "")
    d, recs = scenario_records(doc, "lambda")
    if not d:
        return
    doc.add("switchboard runs the handler in its own worker processes (`kind = \"lambda\"`, the Lambda Runtime API, bundled "
            "bootstraps); serverless-offline runs the same Node handler. The Python handler is `bench/lambda/python/app.py`.", "")
    lat = [r for r in recs if r.get("phase") == "latency"]
    b = by_run([r for r in lat if r["system"] == "builtin"])
    so = by_run([r for r in lat if r["system"] == "serverless-offline"])
    rows = []
    for s in ("builtin", "switchboard-python", "switchboard-node", "serverless-offline"):
        rr = by_run([r for r in lat if r["system"] == s])
        if not rr:
            continue
        ov = [rr[k]["p50_us"] - b[k]["p50_us"] for k in sorted(set(rr) & set(b))] if s.startswith("switchboard") else []
        rows.append([s, len(rr), mmm([r.get("p50_us") for r in rr.values()]), mmm([r.get("p99_us") for r in rr.values()]),
                     mmm([r.get("msgs_per_s") for r in rr.values()]), mmm(ov) if ov else "",
                     ratio_cell(pairs(rr, so, "p50_us")) if s.startswith("switchboard") else ""])
        if ov:
            doc.target(f"{s} warm overhead p50", med(ov) <= 300, f"{fmt(med(ov))} µs", "Runtime API hop and the interpreter's own per-invocation cost.")
        if s.startswith("switchboard"):
            doc.score("managed function, 1 connection", "serverless-offline", f"p50 latency, {s} (lower is better)", pairs(rr, so, "p50_us"), False,
                      "serverless-offline's per-invocation path (its HTTP server, the worker-thread hand-off) is slower.")
    doc.add("Warm round trip, 1 connection, closed loop (overhead = p50 − builtin echo p50, round by round):", "")
    doc.table(["system", "runs", "p50 µs", "p99 µs", "msgs/s", "overhead µs", "p50 / serverless-offline (pair by pair)"], rows, ["---"] + ["---:"] * 6)
    tp = [r for r in recs if r.get("phase") == "throughput"]
    so = by_run([r for r in tp if r["system"] == "serverless-offline"])
    rows, names, vals = [], [], []
    for s in ("switchboard-python", "switchboard-node", "serverless-offline"):
        rr = by_run([r for r in tp if r["system"] == s])
        if not rr:
            continue
        v = [r.get("msgs_per_s") for r in rr.values()]
        rs = pairs(rr, so, "msgs_per_s") if s != "serverless-offline" else []
        rows.append([s, len(rr), mmm(v), mmm([r.get("p50_us") for r in rr.values()]), mmm([r.get("p99_us") for r in rr.values()]),
                     ratio_cell(rs) if rs else "", sum(r.get("errors") or 0 for r in rr.values())])
        names.append(s)
        vals.append(med(v))
        if rs:
            doc.score("managed function throughput", "serverless-offline", f"msgs/s, {s}", rs, True,
                      "Most of each invocation's CPU is the interpreter itself, which both systems pay.")
            if s == "switchboard-node":
                doc.target("lambda throughput switchboard-node / serverless-offline", med(rs) >= 5, times(med(rs)),
                           "Most of each invocation's CPU is the Node worker itself (the same handler code in both); on 2 shared cores the gateway's saving is a fraction of the total.")
    if rows:
        doc.add(f"Throughput, {fmt(med([r.get('connections') for r in tp]), 0)} connections (serverless-offline restarted and primed before each of its runs):", "")
        doc.table(["system", "runs", "msgs/s", "p50 µs", "p99 µs", "/ serverless-offline (pair by pair)", "errors"], rows, ["---"] + ["---:"] * 6)
    cold = [r for r in recs if r.get("phase") == "cold"]
    if cold:
        rows = [[s, len(v), mmm(v, 1)] for s in sorted({r["system"] for r in cold})
                for v in [[r.get("max_us") / 1000 for r in cold if r["system"] == s and r.get("max_us") is not None]]]
        doc.add("Cold start (first message to its answer, ms):", "")
        doc.table(["system", "n", "ms"], rows, ["---", "---:", "---:"])
    doc.chart("lambda.png", "Managed function throughput msgs/s (median)", names, [("msgs/s", vals)], "msgs/s")
    embed_summary(doc, d)


# ----------------------------------------------------------------------------- 5. fan-out
def sec_fanout(doc):
    doc.add("## 5. Fan-out: 1 KiB to a group of 15,000", "")
    d, why = results_dir("fanout")
    provenance(doc, "fanout", d, why)
    rows, labels, sv, kv = [], [], [], []
    if d:
        recs = read_jsonl(os.path.join(d, "results.jsonl"))
        ns = sorted({r.get("n") for r in recs if r.get("kind") == "sustained"})
        doc.add("One management call sends the message to the whole group (switchboard: `POST /v1/groups/bench/messages`; "
                "sockudo: a signed Pusher `POST /apps/app/events` to a channel); sustained = 2 publishers in a closed loop, every "
                "member checked for every message, deliveries/s over first publish → last delivery. Runs alternate; run i of one "
                "system is paired with run i of the other.", "")
        for n in ns:
            per = {}
            for s in ("switchboard", "sockudo"):
                per[s] = [r for r in recs if r.get("kind") == "sustained" and (r.get("system") or r.get("target")) == s and r.get("n") == n]
                shots = [r for r in recs if r.get("kind") == "shots" and (r.get("system") or r.get("target")) == s and r.get("n") == n]
                rows.append([s, f"{n:,}", "1", len(per[s]), mmm([r.get("deliveries_per_s") for r in per[s]]),
                             mmm([r.get("last_member_ms_p50") for r in per[s]], 1),
                             fmt(med([r.get("last_delivery_ms_median") for r in shots]), 1),
                             fmt(med([1e6 * r["server_cpu_s"] / r["deliveries"] for r in per[s] if r.get("deliveries") and r.get("server_cpu_s") is not None]), 2),
                             sum(r.get("losses") or 0 for r in per[s])])
            rs = pairs(dict(enumerate(per["switchboard"])), dict(enumerate(per["sockudo"])), "deliveries_per_s")
            doc.score("fan-out, 15,000 members", "sockudo", f"sustained deliveries/s, {n:,} members", rs, True,
                      "Both servers and the members' load generator share 2 cores; reading 15,000 sockets in the load generator caps both.")
            if n == max(ns) and rs:
                doc.target(f"fan-out sustained vs sockudo ({n:,})", med(rs) >= 2, times(med(rs)),
                           "Both servers and the subscribers' load generator share 2 cores.")
                doc.add(f"- {n:,} members: sustained deliveries/s switchboard / sockudo, run i with run i: {ratio_cell(rs)}", "")
            labels.append(f"{n:,} (1 node)")
            sv.append(med([r.get("deliveries_per_s") for r in per["switchboard"]]))
            kv.append(med([r.get("deliveries_per_s") for r in per["sockudo"]]))
    cd, cwhy = results_dir("cluster")
    cluster_members = None
    if cd:
        for bp in ("redis", "nats"):
            fan = [r for r in read_jsonl(os.path.join(cd, f"{bp}-fanout.jsonl")) if r.get("kind") == "sustained"]
            shots = [r for r in read_jsonl(os.path.join(cd, f"{bp}-fanout.jsonl")) if r.get("kind") == "shots"]
            if fan:
                members = med([r.get("members_at_start") or r.get("members") for r in fan])
                cluster_members = members
                rows.append([f"switchboard, 3 nodes ({bp} backplane)", fmt(members), "3", len(fan), mmm([r.get("deliveries_per_s") for r in fan]),
                             mmm([r.get("last_member_ms_p50") for r in fan], 1), fmt(med([r.get("last_delivery_ms_median") for r in shots]), 1),
                             "", sum(r.get("losses") or 0 for r in fan)])
                labels.append(f"3 nodes, {bp}")
                sv.append(med([r.get("deliveries_per_s") for r in fan]))
                kv.append(None)
    if rows:
        doc.table(["system", "members", "nodes", "sustained runs", "sustained deliveries/s", "last-member p50 ms", "single-shot last delivery ms (median)", "server CPU µs/delivery", "losses"],
                  rows, ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])
    if cd:
        per_node = f"{cluster_members / 3:,.0f}" if cluster_members else "?"
        doc.add(f"The 3-node rows: {per_node} members on each of three nodes sharing a Redis or NATS backplane, published on node A "
                "(section 8 and `bench/cluster.sh`); "
                + (f"**from an earlier run** ({cwhy}); " if cwhy else "")
                + f"measured {dir_date(cd)[0]} by `{SCEN.get('cluster', {}).get('command') or summary_command(cd) or 'bench/cluster.sh'}`. "
                "sockudo was run as one node only (its clustering needs an adapter this benchmark does not set up), so the "
                "3-node figures have no peer to be paired with.", "")
    doc.chart("fanout.png", "Fan-out sustained deliveries/s (median)", labels, [("switchboard", sv), ("sockudo", kv)], "deliveries/s")
    if d:
        embed_summary(doc, d)


# ----------------------------------------------------------------------------- 6. compression
DEFAULT_DEFLATE_LEVEL = "2"


def sec_compression(doc):
    doc.add("## 6. Compression: permessage-deflate on and off, JSON chat messages", "")
    d, recs = scenario_records(doc, "compression")
    recs = [r for r in recs if r.get("phase") == "compression"]
    if not recs:
        return
    payload = med([r.get("payload_bytes_per_msg") for r in recs])
    doc.add(f"`loadgen echo --payload chat`: 512 different JSON chat messages (mean {fmt(payload)} B), "
            f"{fmt(med([r.get('connections') for r in recs]))} connections in a closed loop. `on`: loadgen offers "
            "`permessage-deflate; client_max_window_bits` and compresses its own messages (zlib level 1); `off`: no offer, same "
            "server process. Every server is set like the gateway's defaults (no context takeover either way, 15-bit window, "
            "messages under 32 B plain); the peers run C zlib at level 1, the same algorithm as the gateway's default "
            "(zlib-rs level 2), and switchboard also runs at level 1 (zlib-rs's static-Huffman quick mode). Wire bytes are whole frames as sent, "
            "headers and masks included; CPU is the server process's, per echoed message. In a round every server and mode "
            "runs once; ratios are taken within a round.", "")
    keys = []
    for r in recs:
        k = (r["system"], r["deflate"])
        if k not in keys:
            keys.append(k)
    rows = []
    for s, on in keys:
        rr = by_run([r for r in recs if r["system"] == s and r["deflate"] == on])
        rows.append([next(iter(rr.values())).get("label", s), "on" if on else "off", len(rr), mmm([r.get("msgs_per_s") for r in rr.values()]),
                     mmm([r.get("p50_us") for r in rr.values()]), mmm([r.get("wire_in_bytes_per_msg") for r in rr.values()], 1),
                     mmm([r.get("wire_out_bytes_per_msg") for r in rr.values()], 1), mmm([per_msg_cpu(r) for r in rr.values()], 2),
                     f"{min(r.get('deflate_agreed', 0) for r in rr.values())}/{next(iter(rr.values())).get('connections')}",
                     sum(r.get("errors") or 0 for r in rr.values())])
    doc.table(["server", "deflate", "runs", "msgs/s", "p50 µs", "wire B/msg server → client", "wire B/msg client → server", "server CPU µs/msg", "compressed conns (min)", "errors"],
              rows, ["---", "---"] + ["---:"] * 8)
    # The gateway's default level (crates/switchboard-core/src/config/limits.rs) first.
    gws = sorted({r["system"] for r in recs if r["system"].startswith("switchboard-")},
                 key=lambda s: (s.split("-l")[-1] != DEFAULT_DEFLATE_LEVEL, int(s.split("-l")[-1])))
    if not gws:
        return
    g1 = gws[0]
    on = lambda s: by_run([r for r in recs if r["system"] == s and r["deflate"]])  # noqa: E731
    off = lambda s: by_run([r for r in recs if r["system"] == s and not r["deflate"]])  # noqa: E731
    lines = []
    for s in [g1] + [p for p in ("ws", "websockets") if any(r["system"] == p for r in recs)]:
        rs = pairs(on(s), off(s), "wire_in_bytes_per_msg")
        cpu = pairs(on(s), off(s), None, per_msg_cpu)
        lines.append(f"- {s}: deflate on / off, server → client bytes {ratio_cell(rs)}, server CPU per message {ratio_cell(cpu)}")
    doc.add(*lines, "")
    peer_names = {"ws": "Node ws", "websockets": "Python websockets"}
    for p in ("ws", "websockets"):
        if not any(r["system"] == p for r in recs):
            continue
        for g in gws:
            lvl = g.split("-l")[-1]
            tp = pairs(on(g), on(p), "msgs_per_s")
            cpu = pairs(on(g), on(p), None, per_msg_cpu)
            bw = pairs(on(g), on(p), "wire_in_bytes_per_msg")
            gcpu, pcpu = med([per_msg_cpu(r) for r in on(g).values()]), med([per_msg_cpu(r) for r in on(p).values()])
            doc.score(f"compression on, switchboard level {lvl}", peer_names[p], "msgs/s", tp, True,
                      f"switchboard spent {fmt(gcpu, 2)} µs of CPU per message vs {fmt(pcpu, 2)}.")
            doc.score(f"compression on, switchboard level {lvl}", peer_names[p], "server CPU µs/msg (lower is better)", cpu, False,
                      "zlib work dominates both.")
            gb = med([r.get("wire_in_bytes_per_msg") for r in on(g).values()])
            pb = med([r.get("wire_in_bytes_per_msg") for r in on(p).values()])
            other = [x for x in gws if x != g]
            alt = ""
            if other:
                ob = med([r.get("wire_in_bytes_per_msg") for r in on(other[-1]).values()])
                oc = med([per_msg_cpu(r) for r in on(other[-1]).values()])
                alt = (f" With `[compression] level = {other[-1].split('-l')[-1]}` the gateway sends {fmt(ob, 1)} B per message for "
                       f"{fmt(oc, 2)} µs of CPU (see the table): the trade is configurable per deployment.")
            if gb and pb and gb > pb * (1 + TIE) and lvl == "1":
                whyb = (f"Not the default: at level 1 zlib-rs takes its fastest path (static Huffman codes), the least CPU per "
                        f"message, but on ~{fmt(payload)}-byte JSON its output is larger ({fmt(gb, 1)} vs {fmt(pb, 1)} B on the wire) than "
                        f"C zlib's level 1, which {peer_names[p]} uses." + alt)
            elif gb and pb and gb > pb * (1 + TIE):
                whyb = (f"zlib-rs at level {lvl} and C zlib at level 1 are different deflate implementations that find slightly "
                        f"different matches: {fmt(gb, 1)} vs {fmt(pb, 1)} B on the wire ({pct(gb / pb - 1)} more).")
            else:
                whyb = (f"Both send the same deflate stream size to within 1 % ({fmt(gb, 1)} vs {fmt(pb, 1)} B on the wire): the same "
                        "messages, the same window and no context takeover leave little to tell them apart.")
            doc.score(f"compression on, switchboard level {lvl}", peer_names[p], "bandwidth, wire B/msg server → client (lower is better)", bw, False, whyb)
    systems = [k[0] for k in keys if k[1]]
    doc.chart("compression.png", "JSON chat echo msgs/s (median), permessage-deflate on and off", systems,
              [("deflate on", [med([r.get("msgs_per_s") for r in on(s).values()]) for s in systems]),
               ("deflate off", [med([r.get("msgs_per_s") for r in off(s).values()]) for s in systems])], "msgs/s")
    embed_summary(doc, d)


# ----------------------------------------------------------------------------- 7. sessions
def sec_session(doc):
    doc.add("## 7. Resumable sessions (`switchboard.v1`) vs plain WebSocket", "")
    d, recs = scenario_records(doc, "session")
    if not d:
        return
    echo = [r for r in recs if r.get("phase") == "echo"]
    if echo:
        p = by_run([r for r in echo if r["session"] == "plain"])
        v = by_run([r for r in echo if r["session"] == "v1"])
        c = med([r.get("connections") for r in echo])
        doc.add(f"Echo through one gateway with `[resume] enabled = true`, {fmt(c)} connections × {fmt(med([r.get('size') for r in echo]))} B: "
                "plain connections vs `switchboard.v1` sessions (loadgen sends `m<n>:` frames, checks each echo is the server's next "
                "`m<n>:`, acks every 32 server messages; the server acks too). The two modes run back to back, order swapped each round.", "")
        rows = []
        for name, rr in (("plain", p), ("switchboard.v1", v)):
            rows.append([name, len(rr), mmm([r.get("msgs_per_s") for r in rr.values()]), mmm([r.get("p50_us") for r in rr.values()]),
                         mmm([r.get("p99_us") for r in rr.values()]), mmm([per_msg_cpu(r) for r in rr.values()], 2),
                         f"{sum(r.get('v1_acks_received') or 0 for r in rr.values()):,}", sum(r.get("errors") or 0 for r in rr.values())])
        doc.table(["mode", "runs", "msgs/s", "p50 µs", "p99 µs", "server CPU µs/msg", "server acks", "errors"], rows, ["---"] + ["---:"] * 7)
        rs = pairs(v, p, "msgs_per_s")
        cpu = pairs(v, p, None, per_msg_cpu)
        if rs:
            doc.add(f"- **switchboard.v1 / plain msgs/s: {ratio_cell(rs)}**; server CPU per message v1 / plain: {ratio_cell(cpu)}. "
                    f"Target: {TARGETS['session-echo']}.", "")
            doc.target("switchboard.v1 echo / plain", med(rs) >= 0.9, times(med(rs)),
                       f"A v1 message costs the server {times(med(cpu)) if cpu else '?'} the CPU of a plain one: the `m<n>:` prefix is parsed "
                       "and re-framed, the reply is copied into the replay buffer until acked, and ack frames go both ways (the load "
                       "generator, on the same 2 cores, also frames and parses them).")
    idle = [r for r in recs if r.get("phase") == "idle"]
    if idle:
        p = by_run([r for r in idle if r["session"] == "plain"])
        v = by_run([r for r in idle if r["session"] == "v1"])
        n = med([r.get("requested") for r in idle])
        doc.add(f"Idle memory, {fmt(n)} connections on a fresh gateway per measurement (v1: hello read, nothing sent, so the replay "
                "buffer is empty):", "")
        doc.table(["mode", "runs", "opened (min)", "KiB / connection"],
                  [[name, len(rr), f"{min([r.get('opened', 0) for r in rr.values()] or [0]):,}", mmm([r.get("kib_per_conn") for r in rr.values()], 3)]
                   for name, rr in (("plain", p), ("switchboard.v1", v))], ["---", "---:", "---:", "---:"])
        diffs = [1024 * (v[k]["kib_per_conn"] - p[k]["kib_per_conn"]) for k in sorted(set(p) & set(v))]
        if diffs:
            doc.add(f"- **resumable − plain: {med(diffs):+,.0f} bytes per connection** (round by round "
                    f"{', '.join(f'{x:+,.0f}' for x in diffs)}). Target: {TARGETS['session-idle']}.", "")
            doc.target("resumable − plain idle RSS per connection", abs(med(diffs)) <= 1024, f"{med(diffs):+,.0f} B",
                       "The session's state (token, numbers, an empty replay buffer, timers) is allocated per connection.")
    embed_summary(doc, d)


# ----------------------------------------------------------------------------- 8. cluster
def sec_cluster(doc):
    doc.add("## 8. Cluster: cross-node vs same-node sends, 3-node fan-out", "")
    d, why = results_dir("cluster")
    provenance(doc, "cluster", d, why)
    if not d:
        return
    rows, labels, same_v, cross_v, fan_rows = [], [], [], [], []
    for bp in ("redis", "nats"):
        direct = [r for r in read_jsonl(os.path.join(d, f"{bp}-direct.jsonl")) if r.get("kind") == "direct"]
        for pacing in sorted({r.get("pacing") for r in direct}):
            s = by_run([r for r in direct if r.get("pacing") == pacing and r.get("path") == "same"])
            c = by_run([r for r in direct if r.get("pacing") == pacing and r.get("path") == "cross"])
            rs = pairs(c, s, "deliveries_per_s")
            rows.append([bp, pacing, mmm([r.get("deliveries_per_s") for r in s.values()]), mmm([r.get("deliveries_per_s") for r in c.values()]),
                         ratio_cell(rs, True), sum(r.get("losses") or 0 for r in c.values())])
            labels.append(f"{bp}/{pacing}")
            same_v.append(med([r.get("deliveries_per_s") for r in s.values()]))
            cross_v.append(med([r.get("deliveries_per_s") for r in c.values()]))
            if rs:
                doc.target(f"cluster cross/same {bp}/{pacing}", med(rs) >= 0.5, pct(med(rs)),
                           "A cross-node send adds a backplane publish, the engine's hop and the receiving node's delivery, all on the "
                           "same 2 cores as three nodes, the engine and the client.")
        fan = [r for r in read_jsonl(os.path.join(d, f"{bp}-fanout.jsonl")) if r.get("kind") == "sustained"]
        if fan:
            fan_rows.append([bp, len(fan), mmm([r.get("deliveries_per_s") for r in fan]), sum(r.get("losses") or 0 for r in fan)])
    if rows:
        doc.add(f"Direct sends `POST /prod/@connections/{{id}}`; cross / same = median of back-to-back pairs. Target: {TARGETS['cluster']}.", "")
        doc.table(["backplane", "pacing", "same-node msgs/s", "cross-node msgs/s", "cross / same (pair by pair)", "cross losses"], rows,
                  ["---", "---", "---:", "---:", "---:", "---:"])
    if fan_rows:
        doc.add("Group fan-out over three nodes, published on node A (sustained deliveries/s; also in section 5):", "")
        doc.table(["backplane", "runs", "deliveries/s", "losses"], fan_rows, ["---", "---:", "---:", "---:"])
    doc.chart("cluster.png", "Direct sends msgs/s (median): same vs cross node", labels, [("same-node", same_v), ("cross-node", cross_v)], "msgs/s")
    embed_summary(doc, d)


# ----------------------------------------------------------------------------- main
def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def scoreboard(doc):
    out = ["## Scoreboard: switchboard against each peer, pair by pair", "",
           "Every comparison below is switchboard / peer, computed run by run from runs measured back to back, as the median of "
           "those ratios (range, number of pairs). For a figure where lower is better, a ratio under 1× is ahead.", ""]
    rows = []
    for scen, peer, fig, rs, hib, _ in doc.scores:
        v = verdict(rs, hib)
        rows.append([scen, peer, fig, ratio_cell(rs), {"yes": "yes", "even": "even (within 1 %)", "no": "**no**"}[v]])
    if rows:
        out += ["| scenario | peer | figure | switchboard / peer | ahead? |", "| --- | --- | --- | ---: | --- |"]
        out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
        out.append("")
        behind = [(scen, peer, fig, rs, why) for scen, peer, fig, rs, hib, why in doc.scores if verdict(rs, hib) != "yes"]
        if behind:
            out += ["Where switchboard is not ahead, and why:", ""]
            out += [f"- {scen}, {fig}, against {peer}: {times(med(rs))}. {why}" for scen, peer, fig, rs, why in behind]
        else:
            out.append("switchboard is ahead of every peer on every figure they share in this run.")
        out.append("")
    else:
        out += ["No peer comparisons in this run.", ""]
    out += ["Targets from the issues:", ""]
    out += [f"- {fig}: {value} — {'met' if met else '**not met**'}" + ("" if met else f". Why: {why}") for fig, value, met, why in doc.targets]
    out.append("")
    return out


def main():
    global RUN_START
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="target/report-bench/<ts> of the report run (default: the newest)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    a = ap.parse_args()
    if a.run:
        run_dir = os.path.abspath(a.run)
    else:
        dirs = sorted(glob.glob(os.path.join(ROOT, "target", "report-bench", "*")))
        dirs = [d for d in dirs if os.path.exists(os.path.join(d, "scenarios.jsonl"))]
        run_dir = dirs[-1] if dirs else None
    meta = {}
    if run_dir and os.path.exists(os.path.join(run_dir, "meta.json")):
        meta = json.load(open(os.path.join(run_dir, "meta.json")))
    scen = read_jsonl(os.path.join(run_dir, "scenarios.jsonl")) if run_dir else []
    RUN_START = meta.get("started_at")
    for sc in scen:
        SCEN[sc["scenario"]] = sc

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
    mem = next((f"{int(l.split()[1]) / 1048576:.1f} GiB" for l in open("/proc/meminfo") if l.startswith("MemTotal")), "unknown")
    machine = f"{os.cpu_count()} cores ({cpu}), {mem}, Linux {os.uname().release}"
    doc = Doc(os.path.join(os.path.dirname(os.path.abspath(a.out)), "bench"), machine)
    commit = sh("git", "rev-parse", "--short", "HEAD")
    dirty = sh("git", "status", "--porcelain")
    date = time.strftime("%Y-%m-%d %H:%M", time.localtime(RUN_START)) + f" {tz()}" if RUN_START else "?"
    took = ""
    if meta.get("total_s"):
        took = f" — took {meta['total_s']} s (build {meta.get('build_s', 0)} s; planned ~{meta.get('planned_s', '?')} s plus the build)"
    doc.add("# Benchmarks", "",
            "Generated by `bench/report.py` from the files one `bench/report.sh` run wrote; every figure below is read from those "
            "files. Everything runs on one machine over loopback (127.0.0.x sources, bounded connections and time): servers, peers "
            "and load generators share its cores, so absolute figures depend on what else ran; ratios of runs measured back to "
            "back are the better guide.", "",
            "To regenerate it: `scripts/install-deps.sh` once, then `bench/report.sh` (it installs any peer still missing "
            "before its clock starts; `bench/report.sh --plan` prints the planned time per scenario, `--help` the knobs).", "")
    doc.table(["", ""], [
        ["date", date],
        ["command", f"`{meta.get('command', 'bench/report.sh')}`{took}"],
        ["machine", machine],
        ["commit", f"{commit}{' (work tree had uncommitted changes)' if dirty else ''}"],
        ["load average (1/5/15 min)", f"{meta.get('load_at_start', '?')} at start, {meta.get('load_at_end', '?')} at end"],
        ["raw results", f"`{rel(run_dir)}`" if run_dir else "–"],
        ["charts", f"`{rel(doc.outdir)}/*.png`" if HAVE_MPL else "none: matplotlib not importable (run scripts/install-deps.sh)"],
    ], ["---", "---"])
    if scen:
        doc.add("Scenarios in this run (each section below names its own command, date and machine):", "")
        doc.table(["scenario", "status", "seconds", "planned", "command", "note"],
                  [[s["scenario"], s["status"] if s["status"] == "ok" else f"**{s['status']}**", s["secs"], s.get("planned_s") or "",
                    f"`{s.get('command', '')}`" if s.get("command") else "", s.get("note", "")] for s in scen],
                  ["---", "---", "---:", "---:", "---", "---"])
    doc.add("__SCOREBOARD__", "")
    sec_idle(doc)
    sec_connect(doc)
    sec_matrix(doc, run_dir)
    sec_functions(doc)
    sec_fanout(doc)
    sec_compression(doc)
    sec_session(doc)
    sec_cluster(doc)
    i = doc.lines.index("__SCOREBOARD__")
    doc.lines[i:i + 1] = scoreboard(doc)
    # Sections measured by hand (the soak, slow frames): kept in their own file, which
    # names each one's command and date, and appended as they are.
    hand = os.path.join(ROOT, "docs", "bench", "hand-runs.md")
    if os.path.exists(hand):
        kept = [l for l in open(hand).read().splitlines() if not l.startswith("<!--")]
        doc.lines += [""] + kept
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("\n".join(doc.lines).rstrip() + "\n")
    print(f"wrote {rel(a.out)}" + ("" if HAVE_MPL else " (no charts: matplotlib missing)"))


if __name__ == "__main__":
    main()
