#!/usr/bin/env python3
"""Helpers of scripts/bench.sh (Python 3 standard library only).

  bench_report.py api-floor N NETWORK IMAGE LABEL
      N containers of IMAGE created and started in parallel through the Docker Engine API (the
      local socket, or DOCKER_HOST=unix://...), labelled LABEL=1, on NETWORK; then removed in
      parallel. Prints "<create+start ms>\t<remove ms>".
  bench_report.py maxrss FILE CMD...
      runs CMD and writes its peak resident set size (KiB) to FILE; exits with CMD's status.
  bench_report.py report WORK DOC IMGDIR
      reads the samples scripts/bench.sh left in WORK, writes IMGDIR/bench-rollback.svg and
      IMGDIR/bench-replicas.svg, and the block between <!-- bench:start --> and
      <!-- bench:end --> in DOC (inserted after DOC's title when absent); prints
      the block's tables on stdout.
"""

import http.client
import json
import math
import os
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from xml.sax.saxutils import escape

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


# --- api-floor -----------------------------------------------------------------------------

class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=300):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


def docker_socket():
    host = os.environ.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://"):]
    if host:
        return None
    return "/var/run/docker.sock"


def api(sock, method, url, body=None):
    c = UnixConnection(sock)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, url, body=json.dumps(body) if body is not None else None, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {url}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None


def parallel(fn, items):
    errors, results = [], [None] * len(items)

    def run(i, item):
        try:
            results[i] = fn(item)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(str(e))

    threads = [threading.Thread(target=run, args=(i, it)) for i, it in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def api_floor(n, network, image, label):
    sock = docker_socket()
    if sock is None:
        print("api-floor: DOCKER_HOST is not a unix socket; skipped", file=sys.stderr)
        return 3

    def create_start(_):
        c = api(sock, "POST", "/containers/create",
                {"Image": image, "Labels": {label: "1"}, "HostConfig": {"NetworkMode": network}})
        api(sock, "POST", f"/containers/{c['Id']}/start")
        return c["Id"]

    t0 = time.perf_counter()
    ids, errors = parallel(create_start, list(range(n)))
    t1 = time.perf_counter()
    ids = [i for i in ids if i]
    _, rm_errors = parallel(lambda i: api(sock, "DELETE", f"/containers/{i}?force=true"), ids)
    t2 = time.perf_counter()
    for e in errors + rm_errors:
        print(f"api-floor: {e}", file=sys.stderr)
    if errors or rm_errors:
        return 1
    print(f"{(t1 - t0) * 1000:.1f}\t{(t2 - t1) * 1000:.1f}")
    return 0


def maxrss(path, cmd):
    rc = subprocess.call(cmd)
    with open(path, "w") as f:
        f.write(f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
    return rc


# --- reading the samples -------------------------------------------------------------------

def read_ms(path):
    try:
        with open(path) as f:
            return [float(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def read_int(path):
    """The last integer line of a file (/usr/bin/time -o may write a note before it)."""
    try:
        with open(path) as f:
            lines = [ln.strip() for ln in f if ln.strip().isdigit()]
        return int(lines[-1]) if lines else None
    except FileNotFoundError:
        return None


def read_tsv(path, col):
    vals = []
    try:
        with open(path) as f:
            for ln in f:
                parts = ln.split()
                if len(parts) > col:
                    vals.append(float(parts[col]))
    except FileNotFoundError:
        pass
    return vals


def med(xs):
    return statistics.median(xs) if xs else None


def p90(xs):
    if not xs:
        return None
    s = sorted(xs)
    return s[max(1, math.ceil(0.9 * len(s))) - 1]


def fmt(x, digits=0):
    if x is None:
        return "n/a"
    return f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fr(r):
    return "n/a" if r is None else f"{r:.2f}x"


def verdict(ok):
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


# --- SVG -------------------------------------------------------------------------------------

COL = {"bgd": "#0072B2", "naive": "#E69F00", "naive2": "#B07800", "floor": "#E69F00",
       "floor_rm": "#CC79A7", "api": "#999999", "status": "#009E73", "rollback": "#0072B2"}
FONT = 'font-family="-apple-system,Segoe UI,Helvetica,Arial,sans-serif"'


def nice_max(v):
    if v <= 0:
        return 1, 0.2
    raw = v / 5
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            step = m * mag
            break
    return step * math.ceil(v / step), step


def svg_doc(w, h, body):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" {FONT} font-size="12">\n'
            f'<rect width="{w}" height="{h}" fill="#ffffff"/>\n' + "\n".join(body) + "\n</svg>\n")


def text(x, y, s, anchor="start", size=12, weight="normal", color="#222", rotate=None):
    tr = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'font-weight="{weight}" fill="{color}"{tr}>{escape(s)}</text>')


def tick_label(v):
    return f"{v:g}" if v < 10000 else f"{v:,.0f}"


def strip_chart(path, rows, title, n_note):
    """rows: [(label, samples, color)]; a strip plot per row, median and p90 marked."""
    left, right, top, row_h = 230, 40, 60, 70
    w = 860
    h = top + row_h * len(rows) + 80
    allv = [v for _, s, _ in rows for v in s]
    vmax, step = nice_max(max(allv) * 1.05 if allv else 1)
    pw = w - left - right

    def x(v):
        return left + pw * v / vmax

    b = [text(w / 2, 24, title, "middle", 15, "bold"),
         text(w / 2, 42, n_note, "middle", 12, color="#555")]
    y0, y1 = top, top + row_h * len(rows)
    t = 0.0
    while t <= vmax + 1e-9:
        b.append(f'<line x1="{x(t):.1f}" y1="{y0}" x2="{x(t):.1f}" y2="{y1}" stroke="#e3e3e3"/>')
        b.append(text(x(t), y1 + 16, tick_label(t), "middle", 11, color="#444"))
        t += step
    b.append(f'<line x1="{left}" y1="{y1}" x2="{w - right}" y2="{y1}" stroke="#444"/>')
    b.append(text(left + pw / 2, y1 + 36, "wall time (ms), lower is better", "middle", 12))
    for i, (label, samples, color) in enumerate(rows):
        cy = top + row_h * i + row_h / 2
        b.append(text(left - 10, cy + 4, label, "end", 12))
        for j, v in enumerate(samples):
            jitter = ((j * 7) % 9 - 4) * 3.2
            b.append(f'<circle cx="{x(v):.1f}" cy="{cy + jitter:.1f}" r="4" fill="{color}" '
                     f'fill-opacity="0.55" stroke="{color}"/>')
        m, p = med(samples), p90(samples)
        if m is not None:
            b.append(f'<line x1="{x(m):.1f}" y1="{cy - 22}" x2="{x(m):.1f}" y2="{cy + 22}" '
                     f'stroke="#111" stroke-width="2.5"/>')
            b.append(text(x(m), cy - 26, f"median {m:.0f} ms", "middle", 11, "bold"))
        if p is not None:
            b.append(f'<line x1="{x(p):.1f}" y1="{cy - 16}" x2="{x(p):.1f}" y2="{cy + 16}" '
                     f'stroke="#111" stroke-width="1.5" stroke-dasharray="3,2"/>')
    # legend
    ly = h - 18
    lx = left
    b.append(f'<circle cx="{lx}" cy="{ly - 4}" r="4" fill="#777" fill-opacity="0.55" stroke="#777"/>')
    b.append(text(lx + 10, ly, "one sample", size=11))
    lx += 100
    b.append(f'<line x1="{lx}" y1="{ly - 12}" x2="{lx}" y2="{ly + 3}" stroke="#111" stroke-width="2.5"/>')
    b.append(text(lx + 8, ly, "median", size=11))
    lx += 75
    b.append(f'<line x1="{lx}" y1="{ly - 12}" x2="{lx}" y2="{ly + 3}" stroke="#111" '
             f'stroke-width="1.5" stroke-dasharray="3,2"/>')
    b.append(text(lx + 8, ly, "90th percentile", size=11))
    with open(path, "w") as f:
        f.write(svg_doc(w, h, b))


def line_panel(b, ox, oy, pw, ph, xs, series, ylabel, title, unit_div=1.0):
    """series: [(label, [y or None per x], color, dashed)] drawn over categorical xs."""
    allv = [v / unit_div for _, ys, _, _ in series for v in ys if v is not None]
    vmax, step = nice_max(max(allv) * 1.08 if allv else 1)

    def px(i):
        return ox + (pw * (i + 0.5) / len(xs))

    def py(v):
        return oy + ph - ph * v / vmax

    b.append(text(ox + pw / 2, oy - 12, title, "middle", 13, "bold"))
    t = 0.0
    while t <= vmax + 1e-9:
        b.append(f'<line x1="{ox}" y1="{py(t):.1f}" x2="{ox + pw}" y2="{py(t):.1f}" stroke="#e3e3e3"/>')
        b.append(text(ox - 6, py(t) + 4, tick_label(t), "end", 11, color="#444"))
        t += step
    b.append(f'<line x1="{ox}" y1="{oy + ph}" x2="{ox + pw}" y2="{oy + ph}" stroke="#444"/>')
    b.append(f'<line x1="{ox}" y1="{oy}" x2="{ox}" y2="{oy + ph}" stroke="#444"/>')
    for i, xv in enumerate(xs):
        b.append(text(px(i), oy + ph + 16, str(xv), "middle", 11, color="#444"))
    b.append(text(ox + pw / 2, oy + ph + 34, "replicas per color", "middle", 12))
    b.append(text(ox - 44, oy + ph / 2, ylabel, "middle", 12, rotate=-90))
    for label, ys, color, dashed in series:
        pts = [(px(i), py(v / unit_div)) for i, v in enumerate(ys) if v is not None]
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        if len(pts) > 1:
            d = " ".join(f"{a:.1f},{c:.1f}" for a, c in pts)
            b.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2.2"{dash}/>')
        for a, c in pts:
            b.append(f'<circle cx="{a:.1f}" cy="{c:.1f}" r="4" fill="{color}"/>')
    # legend, top left inside the panel
    ly = oy + 14
    for label, _, color, dashed in series:
        dash = ' stroke-dasharray="6,4"' if dashed else ""
        b.append(f'<rect x="{ox + 8}" y="{ly - 11}" width="250" height="16" fill="#ffffff" fill-opacity="0.85"/>')
        b.append(f'<line x1="{ox + 12}" y1="{ly - 4}" x2="{ox + 36}" y2="{ly - 4}" stroke="{color}" stroke-width="2.2"{dash}/>')
        b.append(text(ox + 42, ly, label, size=11))
        ly += 17


def replicas_chart(path, xs, deploy, floor_run, floor_rm, floor_api, status, rollback, title):
    w, h = 960, 400
    b = [text(w / 2, 24, title, "middle", 15, "bold")]
    line_panel(b, 80, 70, 370, 260, xs, [
        ("bgd deploy (median)", deploy, COL["bgd"], False),
        ("floor: N parallel docker run -d", floor_run, COL["floor"], True),
        ("floor + N parallel docker rm -f", floor_rm, COL["floor_rm"], True),
        ("Engine API floor: N create+start", floor_api, COL["api"], True),
    ], "wall time (s)", "Deploy of a second release vs the daemon's floor", unit_div=1000.0)
    line_panel(b, 560, 70, 370, 260, xs, [
        ("bgd status (median)", status, COL["status"], False),
        ("bgd rollback (median)", rollback, COL["rollback"], False),
    ], "wall time (ms)", "Status and rollback")
    b.append(text(w / 2, h - 10, "lower is better; medians of the samples of one run", "middle", 11, color="#555"))
    with open(path, "w") as f:
        f.write(svg_doc(w, h, b))


# --- report --------------------------------------------------------------------------------

def report(work, doc, imgdir):
    meta = {}
    with open(os.path.join(work, "meta")) as f:
        for ln in f:
            if "=" in ln:
                k, v = ln.rstrip("\n").split("=", 1)
                meta[k] = v
    W = lambda *p: os.path.join(work, *p)  # noqa: E731
    reps = [int(x) for x in meta["replicas"].split()]
    delay = float(meta.get("readiness_delay_ms", "0"))

    # 1
    naive, naive_served, bgd = read_ms(W("p1", "naive.ms")), read_ms(W("p1", "naive_served.ms")), read_ms(W("p1", "bgd.ms"))
    status2 = read_ms(W("p1", "status.ms"))
    api2 = {c: read_int(W("p1", f"api_{c}")) for c in ("status", "rollback")}
    # 2
    R = {}
    for n in reps:
        d = lambda f, n=n: W("p2", str(n), f)  # noqa: E731
        run, rm = read_ms(d("floor_run.ms")), read_ms(d("floor_rm.ms"))
        both = [a + c for a, c in zip(run, rm)]
        R[n] = {
            "deploy": read_ms(d("deploy.ms")), "status": read_ms(d("status.ms")),
            "rollback": read_ms(d("rollback.ms")), "floor_run": run, "floor_both": both,
            "floor_api": read_tsv(d("floor_api.tsv"), 0),
            "api": {c: read_int(d(f"api_{c}")) for c in ("deploy", "status", "rollback")},
            "rss_kb": read_int(d("rss_kb")),
        }
    # 3
    one, many_idle, many_load = (read_ms(W("p3", f)) for f in ("one.ms", "many_idle.ms", "many_load.ms"))
    loads = []
    p3 = W("p3")
    if os.path.isdir(p3):
        for fn in sorted(os.listdir(p3)):
            if fn.startswith("load-") and fn.endswith(".json"):
                try:
                    with open(os.path.join(p3, fn)) as f:
                        loads.append(json.loads(f.read().strip().splitlines()[-1]))
                except (ValueError, IndexError):
                    loads.append(None)
    load_req = sum(x["requests"] for x in loads if x)
    load_fail = sum(x["failures"] for x in loads if x)
    load_missing = sum(1 for x in loads if not x)
    fail_kinds = {}
    for x in loads:
        for k, v in (x or {}).get("failure_kinds", {}).items():
            fail_kinds[k] = fail_kinds.get(k, 0) + v
    try:
        with open(W("failures")) as f:
            failures = [ln.rstrip("\n") for ln in f if ln.strip()]
    except FileNotFoundError:
        failures = []

    apps = int(meta["apps"])
    nmin, nmax = min(reps), max(reps)
    mn, mb, ms_, mst = med(naive), med(bgd), med(naive_served), med(status2)
    out = []
    A = out.append
    A(f"Produced by `{meta['command']}` on {meta['date']} (Docker Engine {meta['engine']}, storage "
      f"driver {meta['driver']}, {meta['cores']} cores, local socket; {meta['bgd']} built with "
      f"`--release` from {meta['revision']}), in {int(meta.get('seconds', '0')) // 60} min "
      f"{int(meta.get('seconds', '0')) % 60} s. Every figure in this section comes from that one "
      "run, bgd and its baselines side by side on the same host; medians, not means. The demo "
      "app (`bgd-demo`, no start delay) behind nginx 1.30, readiness every 100 ms with 1 success, "
      "`switch: {verify: 0s, drain: 5s}`.")
    A("")

    # targets
    rb_ratio = ratio(mb, mn)
    t_rb = None if mb is None or mn is None else (mb <= mn and mb < 200)
    r1, rN = med(R[nmin]["rollback"]), med(R[nmax]["rollback"])
    t_rbN = None if r1 is None or rN is None else rN <= 1.3 * r1
    sN = med(R[nmax]["status"])
    t_st = None if mst is None or sN is None else (mst < 100 and sN < 150)
    dep_ok, dep_txt = [], []
    for n in reps:
        dm, fm = med(R[n]["deploy"]), med(R[n]["floor_run"])
        rr = ratio(None if dm is None else dm - delay, fm)
        dep_ok.append(None if rr is None else rr <= 1.2)
        dep_txt.append(f"{n}: {fr(rr)}")
    t_dep = None if None in dep_ok else all(dep_ok)
    # API requests: a + b*N through the smallest and largest N; linear if the middle fits
    fits, t_api = {}, True
    for c in ("deploy", "status", "rollback"):
        lo, hi = R[nmin]["api"][c], R[nmax]["api"][c]
        if lo is None or hi is None or nmax == nmin:
            fits[c] = None
            t_api = None
            continue
        slope = (hi - lo) / (nmax - nmin)
        icpt = lo - slope * nmin
        linear = True
        for n in reps:
            got = R[n]["api"][c]
            if got is not None:
                pred = icpt + slope * n
                linear = linear and got <= pred * 1.2 + 3
        fits[c] = (icpt, slope, linear)
        if t_api is not None:
            t_api = t_api and linear and slope <= 5
    rss = R[nmax]["rss_kb"]
    t_rss = None if rss is None else rss / 1024 < 40
    m1, mi, ml = med(one), med(many_idle), med(many_load)
    t_many = None if m1 is None or ml is None or not loads else (ml <= 1.5 * m1 and load_fail == 0 and load_missing == 0)

    A("### Targets")
    A("")
    A("| target | measured | |")
    A("|---|---|---|")
    A(f"| rollback median <= 1.0x the naive recipe and < 200 ms, 2 replicas | bgd {fmt(mb)} ms, naive {fmt(mn)} ms: {fr(rb_ratio)} | {verdict(t_rb)} |")
    A(f"| rollback with {nmax} replicas <= 1.3x rollback with {nmin} | {fmt(rN)} ms vs {fmt(r1)} ms: {fr(ratio(rN, r1))} | {verdict(t_rbN)} |")
    A(f"| status < 100 ms with 2 replicas and < 150 ms with {nmax} | {fmt(mst)} ms and {fmt(sN)} ms | {verdict(t_st)} |")
    A(f"| deploy minus the app's readiness delay ({delay:.0f} ms) within 1.2x of the floor (N parallel `docker run -d`) | deploy / floor at {', '.join(dep_txt)} | {verdict(t_dep)} |")
    api_txt = "; ".join(
        f"{c} {fits[c][0]:.0f} + {fits[c][1]:.2f}·N" for c in ("deploy", "status", "rollback") if fits.get(c))
    A(f"| Engine API requests per command O(replicas), a small constant (read here: linear in N, at most 5 per replica) | {api_txt or 'n/a'} | {verdict(t_api)} |")
    A(f"| peak RSS of a {nmax}-replica deploy < 40 MiB | {fmt(None if rss is None else rss / 1024, 1)} MiB | {verdict(t_rss)} |")
    A(f"| with {apps} apps on one nginx, one app's rollback <= 1.5x its time with 1 app, 0 failed requests on the other {apps - 1} | {fmt(ml)} ms vs {fmt(m1)} ms: {fr(ratio(ml, m1))}; {load_fail} failed of {load_req} | {verdict(t_many)} |")
    A("")

    # 1
    A(f"### Rollback, 2 replicas per color, idle ({meta['rollbacks']} samples of each, interleaved)")
    A("")
    A("- **naive**: write an upstream file naming the other color's container IPs (looked up "
      "beforehand), `docker cp` it into the nginx container, `docker exec <lb> nginx -s reload`. "
      "It verifies nothing and returns before nginx has switched; the second row adds what a "
      "script must do to know the switch happened: poll the live listener until the other "
      "release answers.")
    A("- **bgd**: the wall time of a whole `bgd rollback` (process start to exit): a readiness "
      "pass over the parked replicas, one exec that takes the deploy lock, moves the rollback "
      "flag (no reload: nginx reads it at every request) and records the state and history "
      "with the switch window, and the confirmation through the live listener, watched "
      "throughout by the switch window.")
    A("")
    A("| measurement | naive median / p90 (ms) | bgd median / p90 (ms) | bgd / naive (medians) |")
    A("|---|---|---|---|")
    A(f"| switch: naive file + `docker cp` + `nginx -s reload`; bgd `bgd rollback` | {fmt(mn)} / {fmt(p90(naive))} | {fmt(mb)} / {fmt(p90(bgd))} | {fr(rb_ratio)} |")
    A(f"| naive until the live listener serves the other release; bgd `bgd rollback` | {fmt(ms_)} / {fmt(p90(naive_served))} | {fmt(mb)} / {fmt(p90(bgd))} | {fr(ratio(mb, ms_))} |")
    A(f"| `bgd status` ({meta['samples']} samples) | | {fmt(mst)} / {fmt(p90(status2))} | |")
    A("")
    A(f"Engine API requests with 2 replicas: `bgd status` {api2['status'] if api2['status'] is not None else 'n/a'}, "
      f"`bgd rollback` {api2['rollback'] if api2['rollback'] is not None else 'n/a'}.")
    A("")

    # 2
    A("### Against replicas")
    A("")
    A(f"Per replica count: a first deploy (`bgd-demo:v1`) and a second (`v2`, not timed), then "
      f"{meta['deploys']} timed deploys alternating `v1`/`v2` (each starts N replicas, gates "
      "them, switches and removes the N parked ones), each followed by the daemon's floor: N "
      "parallel `docker run -d` of the same image on the app's network, then N parallel "
      "`docker rm -f` of them, then the same create+start through the Engine API directly "
      f"(threads, no CLI). Then one more deploy with `-v` (API requests) under a peak-RSS meter. "
      "Each replica count has its own app; they stay up (a smaller count's app idles while a larger "
      "one is measured). "
      f"Once every replica count's app is up: after 5 s idle, {meta['samples']} `bgd status` and "
      f"then {meta['samples']} `bgd rollback` of each, interleaved across the replica counts "
      "(1, 8, 32, 1, 8, 32, ...), so that every count meets the same host. Medians in ms.")
    A("")
    A("| replicas per color | `bgd deploy` | floor: N× `docker run -d` | deploy / floor | floor + N× `docker rm -f` | deploy / (floor + rm) | Engine API floor: N× create+start | `bgd status` | `bgd rollback` | rollback / rollback with %d |" % nmin)
    A("|---|---|---|---|---|---|---|---|---|---|")
    for n in reps:
        r = R[n]
        dm, fm, fb, fa = med(r["deploy"]), med(r["floor_run"]), med(r["floor_both"]), med(r["floor_api"])
        A(f"| {n} | {fmt(dm)} | {fmt(fm)} | {fr(ratio(dm, fm))} | {fmt(fb)} | {fr(ratio(dm, fb))} | {fmt(fa)} | {fmt(med(r['status']))} | {fmt(med(r['rollback']))} | {fr(ratio(med(r['rollback']), r1))} |")
    A("")
    A("| replicas per color | Engine API requests: `deploy` | `status` | `rollback` | peak RSS of `bgd deploy` (MiB) |")
    A("|---|---|---|---|---|")
    for n in reps:
        a = R[n]["api"]
        A(f"| {n} | {a['deploy'] if a['deploy'] is not None else 'n/a'} | {a['status'] if a['status'] is not None else 'n/a'} | {a['rollback'] if a['rollback'] is not None else 'n/a'} | {fmt(None if R[n]['rss_kb'] is None else R[n]['rss_kb'] / 1024, 1)} |")
    if all(fits.get(c) for c in ("deploy", "status", "rollback")):
        A(f"| per added replica ({nmin} to {nmax}) | {fits['deploy'][1]:.2f} | {fits['status'][1]:.2f} | {fits['rollback'][1]:.2f} | |")
    A("")

    # 3
    A(f"### Many apps behind one nginx (`lb.hosts`), {meta['many']} rollbacks per setting")
    A("")
    A(f"{apps} apps with 1 replica each share one nginx container, its ports and a network, each "
      f"with its own `hosts` name. The first app's `bgd rollback` alone on the nginx, then with "
      f"the other {apps - 1} deployed, idle, then while `bgd-load` (3 paced keep-alive clients, "
      f"25 ms apart, no retries) runs against each of the other {apps - 1} host names and "
      "requires every answer to come from that app's own server (`X-Bgd-App`).")
    A("")
    A("| apps on the nginx | one app's `bgd rollback`, median / p90 (ms) | vs 1 app | failed requests on the other apps |")
    A("|---|---|---|---|")
    A(f"| 1 | {fmt(m1)} / {fmt(p90(one))} | 1.00x | |")
    A(f"| {apps}, idle | {fmt(mi)} / {fmt(p90(many_idle))} | {fr(ratio(mi, m1))} | |")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(fail_kinds.items()))
    miss = f"; {load_missing} load summaries missing" if load_missing else ""
    A(f"| {apps}, bgd-load on the other {apps - 1} | {fmt(ml)} / {fmt(p90(many_load))} | {fr(ratio(ml, m1))} | {load_fail} of {load_req}{' (' + kinds + ')' if kinds else ''}{miss} |")
    A("")
    tables = "\n".join(out)

    # charts
    os.makedirs(imgdir, exist_ok=True)
    strip_chart(os.path.join(imgdir, "bench-rollback.svg"), [
        ("naive: file + docker cp + reload", naive, COL["naive"]),
        ("naive, until the listener serves it", naive_served, COL["naive2"]),
        ("bgd rollback (whole command)", bgd, COL["bgd"]),
    ], "Rollback latency, 2 replicas per color, idle",
        f"{meta['rollbacks']} samples per row, one run, interleaved; {meta['engine']} on {meta['cores']} cores")
    replicas_chart(os.path.join(imgdir, "bench-replicas.svg"), reps,
                   [med(R[n]["deploy"]) for n in reps], [med(R[n]["floor_run"]) for n in reps],
                   [med(R[n]["floor_both"]) for n in reps], [med(R[n]["floor_api"]) for n in reps],
                   [med(R[n]["status"]) for n in reps], [med(R[n]["rollback"]) for n in reps],
                   "bgd against the number of replicas")
    rel = os.path.relpath(imgdir, os.path.dirname(os.path.abspath(doc)) or ".")
    A("### Charts")
    A("")
    A(f"![Rollback latency with 2 replicas: every sample of the naive recipe and of bgd rollback, medians marked]({rel}/bench-rollback.svg)")
    A("")
    A(f"![Deploy time against replicas with the daemon's floor, and status and rollback time against replicas]({rel}/bench-replicas.svg)")
    A("")

    # reading it
    A("### Reading it")
    A("")
    said = []
    if mb is not None and mn is not None:
        s = (f"With 2 replicas a whole `bgd rollback` takes {fmt(mb)} ms against {fmt(mn)} ms for the "
             f"naive recipe's copy and reload ({fr(rb_ratio)}): the target of at most 1.0x and under "
             f"200 ms is {'met' if t_rb else 'missed'}")
        if ms_ is not None:
            s += (f"; counted until the live listener serves the other release, the naive recipe "
                  f"takes {fmt(ms_)} ms, and bgd, which includes that confirmation, is "
                  f"{fr(ratio(mb, ms_))} of it")
        said.append(s + ".")
    if r1 is not None and rN is not None:
        said.append(f"Rollback goes from {fmt(r1)} ms with {nmin} replica{'s' if nmin > 1 else ''} to {fmt(rN)} ms with "
                    f"{nmax} ({fr(ratio(rN, r1))}; target <= 1.3x: {'met' if t_rbN else 'missed'}).")
    if mst is not None and sN is not None:
        said.append(f"`bgd status` takes {fmt(mst)} ms with 2 replicas and {fmt(sN)} ms with {nmax} "
                    f"(targets < 100 and < 150 ms: {'met' if t_st else 'missed'}).")
    parts = []
    for n in reps:
        dm, fm, fb = med(R[n]["deploy"]), med(R[n]["floor_run"]), med(R[n]["floor_both"])
        if dm is not None and fm is not None:
            parts.append(f"{fr(ratio(dm - delay, fm))} of the floor with {n} ({fr(ratio(dm, fb))} of "
                         "floor plus removal)")
    if parts:
        said.append("A deploy of a second release takes " + ", ".join(parts) +
                    f"; the target of 1.2x is {'met' if t_dep else 'missed'}. The demo app has no "
                    "start delay, so nothing is subtracted for it; the deploy also removes the "
                    "parked release, which the floor without removal leaves out.")
    if all(fits.get(c) for c in ("deploy", "status", "rollback")):
        said.append("Engine API requests grow by " + ", ".join(
            f"{fits[c][1]:.2f} per replica for `{c}`" for c in ("deploy", "status", "rollback")) +
            f" (from {fits['deploy'][0]:.0f}, {fits['status'][0]:.0f} and {fits['rollback'][0]:.0f} "
            f"at 0): {'linear with a small constant' if t_api else 'not within linear growth of at most 5 per replica'}.")
    if rss is not None:
        said.append(f"bgd's peak RSS during a {nmax}-replica deploy is {rss / 1024:.1f} MiB "
                    f"(target < 40 MiB: {'met' if t_rss else 'missed'}).")
    if m1 is not None and ml is not None:
        said.append(f"With {apps} apps on one nginx, one app's rollback takes {fmt(ml)} ms while the "
                    f"other {apps - 1} are under load, against {fmt(m1)} ms alone ({fr(ratio(ml, m1))}), "
                    f"and the other apps saw {load_fail} failed requests of {load_req}: the target "
                    f"(<= 1.5x, 0 failed) is {'met' if t_many else 'missed'}. Without the load, "
                    f"{apps} apps make it {fmt(mi)} ms ({fr(ratio(mi, m1))}): the load's share of "
                    "the 2 cores is part of the loaded figure.")
    if failures:
        said.append(f"{len(failures)} command(s) failed during the run and gave no sample: " +
                    "; ".join(f"`{x}`" for x in failures[:5]) + ("; ..." if len(failures) > 5 else "") + ".")
    said.append("This machine is shared and its container-filesystem operations vary from one "
                "minute to the next: compare the figures within this run, not across runs.")
    for x in said:
        A(f"- {x}")
    A("")
    # the page's older sections follow the block: the first is bench-switch.sh's
    A("## `scripts/bench-switch.sh`: switch latency and dropped requests, nginx 1.30 and 1.22")
    block = "\n".join(out)

    with open(doc) as f:
        textdoc = f.read()
    new = f"{START}\n{block}\n{END}"
    if START in textdoc and END in textdoc:
        head, rest = textdoc.split(START, 1)
        textdoc = head + new + rest.split(END, 1)[1]
    else:
        # right after the page's title
        title, _, body = textdoc.partition("\n")
        textdoc = f"{title}\n\n{new}\n\n{body.lstrip(chr(10))}"
    with open(doc, "w") as f:
        f.write(textdoc)
    print(tables)
    for x in failures:
        print(f"failed: {x}")
    return 0


def main(argv):
    if len(argv) >= 5 and argv[0] == "api-floor":
        return api_floor(int(argv[1]), argv[2], argv[3], argv[4])
    if len(argv) >= 3 and argv[0] == "maxrss":
        return maxrss(argv[1], argv[2:])
    if len(argv) == 4 and argv[0] == "report":
        return report(argv[1], argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
