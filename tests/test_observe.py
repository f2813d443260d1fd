#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test_observe.py POOLD POOLCTL POOL_WORKER: poolctl top, who holds the
memory, and poold's warnings, against pooldS of its own.

  - top in a pseudo-terminal of 80x24: no line wider than 80 columns, the
    header with the uptime, `q` quits with status 0 and gives the terminal
    back (normal screen, cursor, echo);
  - top without a terminal: plain frames whose rates per second are the
    differences of the counters of two frames over the interval shown,
    within the rounding of three significant figures; sorted as asked;
  - procs --sort, show PID: the bytes a process holds by class, its peak;
  - each warning (pool_full, class_exhausted, leak_suspect, double_free,
    slots) raised within its bound, shown by `poolctl warnings`, `stats`,
    Prometheus (poold_warning{kind=...}), the log and sd_notify STATUS=
    (a NOTIFY_SOCKET of the test's), then cleared once its cause is gone;
  - error messages of poolctl and poold;
  - the POOLD_ prefix: POOLD_EMBEDDED_BYTES, and its older name
    POOL_EMBEDDED_BYTES still read (through libpoolclient-preload.so).

Each poold gets its own socket and segment name, is stopped by pid, and its
segment removed. Every wait is bounded.
"""
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import time
import fcntl
import struct

POOLD, POOLCTL, WORKER = sys.argv[1:4]
PRELOAD = sys.argv[4] if len(sys.argv) > 4 else None
failures = []
children = []


def fail(msg):
    print("FAIL: " + msg, flush=True)
    failures.append(msg)


def ok(msg):
    print("ok: " + msg, flush=True)


class Poold:
    def __init__(self, tag, *args, notify=False):
        self.dir = tempfile.mkdtemp(prefix="poold-obs-")
        self.sock = os.path.join(self.dir, "poold.sock")
        self.shm = "/poold-obs-%d-%s" % (os.getpid(), tag)
        if os.path.exists("/dev/shm" + self.shm):
            raise SystemExit("/dev/shm%s exists already; not ours to remove" % self.shm)
        self.log = os.path.join(self.dir, "poold.log")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        self.notify = None
        if notify:
            path = os.path.join(self.dir, "notify")
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify.bind(path)
            env["NOTIFY_SOCKET"] = path
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [POOLD, "--socket", self.sock, "--shm-name", self.shm, *args],
                stdout=log, stderr=log, env=env)
        children.append(self.proc)
        end = time.time() + 10
        while time.time() < end:
            if self.ctl("ping").returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise SystemExit("poold did not start:\n" + open(self.log).read())

    def ctl(self, *args, timeout=15, env=None):
        return subprocess.run([POOLCTL, "--socket", self.sock, *args], capture_output=True,
                              text=True, timeout=timeout, env=env)

    def stats(self):
        r = self.ctl("stats", "--json")
        return json.loads(r.stdout)

    def statuses(self):
        """Every STATUS= poold sent to the notify socket so far."""
        out = []
        while self.notify and select.select([self.notify], [], [], 0)[0]:
            for line in self.notify.recv(65536).decode().split("\n"):
                if line.startswith("STATUS="):
                    out.append(line[7:])
        return out

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            os.unlink("/dev/shm" + self.shm)
        except FileNotFoundError:
            pass
        if self.notify:
            self.notify.close()
        subprocess.run(["rm", "-rf", self.dir])


def worker(pd, *args):
    p = subprocess.Popen([WORKER, "--socket", pd.sock, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    children.append(p)
    return p


def stop_worker(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def wait_until(what, seconds, cond):
    """cond() until true, at most `seconds`; the time it took or None."""
    t0 = time.time()
    while time.time() - t0 < seconds:
        v = cond()
        if v:
            return time.time() - t0
        time.sleep(0.2)
    fail("%s: not within %.0f s" % (what, seconds))
    return None


def warnings_of(pd, kind):
    return [w for w in pd.stats().get("warnings", []) if w["kind"] == kind]


def parse_count(s):
    """"412k" -> 412000.0; "-" -> None."""
    if s == "-":
        return None
    mult = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    if s[-1] in mult:
        return float(s[:-1]) * mult[s[-1]]
    return float(s)


def close_enough(text, exact, dt):
    """The rate shown as text ("10.0k", "4.00", "212") is exact within
    rounding: half a unit of its last digit, plus what rounding the
    interval to the millisecond shown moves."""
    mult = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text[-1], 1)
    digits = text.rstrip("kMGT")
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    half = 0.5 * 10 ** -decimals * mult
    return abs(parse_count(text) - exact) <= half + exact * 0.0005 / dt + 1e-9


# ---------------------------------------------------------------- top ---

def top_pty(pd):
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(POOLCTL, [POOLCTL, "--socket", pd.sock, "top"])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    os.kill(pid, signal.SIGWINCH)
    out = b""
    t0 = time.time()
    # Let it draw a few frames (one a second), then press q.
    while time.time() - t0 < 3.5:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    attrs = termios.tcgetattr(fd)
    if attrs[3] & termios.ICANON or attrs[3] & termios.ECHO:
        fail("top: the terminal is not in raw mode while top runs")
    else:
        ok("top: raw mode (no ICANON, no ECHO) while it runs")
    # p sorts by pid at once, without waiting for the next second.
    before = len(out)
    os.write(fd, b"p")
    t1 = time.time()
    while time.time() - t1 < 0.5:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            out += os.read(fd, 65536)
    frame = out[before:].decode(errors="replace").split("\x1b[H")[-1]
    frame = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", frame)
    pids = [int(l.split()[0]) for l in frame.split("\n")
            if re.match(r"\s*\d+ pool_worker", l)]
    if "sort: pid/size" not in frame or len(pids) < 2 or pids != sorted(pids):
        fail("top: after p, sort %s, pids %s" % ("sort: pid/size" in frame, pids))
    else:
        ok("top: p sorts by pid at once: %s" % pids)
    os.write(fd, b"q")
    status = None
    end = time.time() + 5
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                out += os.read(fd, 65536)
            except OSError:
                pass
        wpid, st = os.waitpid(pid, os.WNOHANG)
        if wpid == pid:
            status = os.waitstatus_to_exitcode(st)
            break
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        fail("top: still running 5 s after q")
    elif status != 0:
        fail("top: status %d after q, want 0" % status)
    else:
        ok("top: q quits, status 0")
    attrs = termios.tcgetattr(fd)
    if not (attrs[3] & termios.ICANON and attrs[3] & termios.ECHO):
        fail("top: the terminal is left without ICANON/ECHO")
    else:
        ok("top: terminal modes restored")
    os.close(fd)
    text = out.decode(errors="replace")
    if "\x1b[?1049l" not in text or "\x1b[?25h" not in text:
        fail("top: the normal screen and the cursor are not given back")
    # Lines as the terminal shows them: split at line feeds and cursor
    # moves, drop the escape sequences.
    widest = 0
    for piece in re.split(r"\r?\n|\x1b\[H", text):
        visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", piece).replace("\r", "")
        widest = max(widest, len(visible))
    if widest > 80:
        fail("top: a line of %d columns on an 80-column terminal" % widest)
    else:
        ok("top: the widest line is %d columns on 80x24" % widest)
    frames = [f for f in text.split("\x1b[H") if "poold " in f]
    if len(frames) < 2:
        fail("top: %d frames in 3.5 s, want at least 2" % len(frames))
        return
    last = frames[-1]
    nlines = last.count("\n")
    if nlines > 23:
        fail("top: a frame of %d lines on a 24-line terminal" % nlines)
    else:
        ok("top: frames of %d lines on 24" % nlines)
    if not re.search(r" up \d+(s|m\d\ds|h\d\dm)", last):
        fail("top: no uptime in human form in the header: %r" % last[:200])
    for head in ("SIZE", "IN USE", "FREE", "ALLOC/s", "FREE/s", "MISS/s", "CENT/s", "EXH/s",
                 "SAME%", "MISS%", "PID", "GROWTH/1m"):
        if head not in last:
            fail("top: no %s column at 80 columns" % head)
    ok("top: header and columns at 80x24")


def top_plain(pd, wpid, leak_pid):
    env = dict(os.environ, COLUMNS="250")
    r = pd.ctl("top", "--iterations", "3", "--delay", "1", timeout=20, env=env)
    if r.returncode != 0:
        fail("top -n 3 without a terminal: status %d: %s" % (r.returncode, r.stderr))
        return
    if "\x1b" in r.stdout:
        fail("top without a terminal writes escape sequences")
    # A frame is header lines, an empty line, the classes, an empty line,
    # the processes, an empty line.
    parsed = []
    blocks = r.stdout.strip("\n").split("\n\n")
    # blocks: [header, classes, procs] * 3
    if len(blocks) != 9:
        fail("top -n 3: %d blocks, want 3 frames of header, classes, processes:\n%s" %
             (len(blocks), r.stdout))
        return
    for i in range(3):
        head, cls, procs = blocks[3 * i:3 * i + 3]
        m = re.search(r"\(interval ([0-9.]+) s\)", head)
        dt = float(m.group(1)) if m else None
        ctab = table(cls)
        ptab = table(procs)
        parsed.append((dt, ctab, ptab, head))
    checked = 0
    for i in range(1, 3):
        dt, ctab, ptab, head = parsed[i]
        _, cprev, pprev, _ = parsed[i - 1]
        if dt is None or dt <= 0:
            fail("top: frame %d has no interval: %s" % (i + 1, head))
            continue
        for size, row in ctab.items():
            if size not in cprev:
                continue
            for rate, total in (("ALLOC/s", "ALLOCS"), ("FREE/s", "FREES"),
                                ("EXH/s", "EXHAUSTED")):
                exact = (int(row[total]) - int(cprev[size][total])) / dt
                if row[rate] == "-" or not close_enough(row[rate], exact, dt):
                    fail("top: class %s %s shows %s, counters say %.3f" %
                         (size, rate, row[rate], exact))
                checked += 1
        for pid, row in ptab.items():
            if pid not in pprev:
                continue
            exact = (int(row["ALLOCS"]) - int(pprev[pid]["ALLOCS"])) / dt
            if row["ALLOC/s"] == "-" or not close_enough(row["ALLOC/s"], exact, dt):
                fail("top: pid %s ALLOC/s shows %s, counters say %.3f" %
                     (pid, row["ALLOC/s"], exact))
            checked += 1
        # Whole pool: the sum of the classes.
        m = re.search(r"per second: allocs (\S+)", head)
        exact = sum(int(r["ALLOCS"]) - int(cprev[s]["ALLOCS"])
                    for s, r in ctab.items() if s in cprev) / dt
        if not m or m.group(1) == "-" or not close_enough(m.group(1), exact, dt):
            fail("top: total allocs/s %s, counters say %.3f" % (m and m.group(1), exact))
    if checked < 10:
        fail("top: only %d rates checked" % checked)
    else:
        ok("top: %d rates match the counter differences over the interval" % checked)
    # Sorted by bytes in use: the leaking worker holds the most.
    procs = list(parsed[-1][2].keys())
    if not procs or procs[0] != str(leak_pid):
        fail("top: sorted by in use, the first process is %s, not the leaker %d:\n%s" %
             (procs[:1], leak_pid, blocks[-1]))
    else:
        ok("top: sorted by bytes in use (the leaker first)")
    r = pd.ctl("top", "-n", "1", "--sort", "pid", env=env)
    pids = [int(p) for p in table(r.stdout.strip("\n").split("\n\n")[2]).keys()]
    if pids != sorted(pids) or len(pids) < 2:
        fail("top --sort pid: %s" % pids)
    else:
        ok("top --sort pid: %s" % pids)


def watch(pd):
    """stats --watch N is top's view every N seconds: a second frame has
    rates."""
    p = subprocess.Popen([POOLCTL, "--socket", pd.sock, "stats", "--watch", "0.5"],
                         stdout=subprocess.PIPE, text=True)
    children.append(p)
    rates = None
    end = time.time() + 10
    while time.time() < end:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        line = p.stdout.readline() if r else ""
        m = re.match(r"per second: allocs (\S+) .*\(interval ([0-9.]+) s\)", line)
        if m and m.group(1) != "-":
            rates = line.strip()
            break
    p.terminate()
    p.wait(5)
    if not rates:
        fail("stats --watch 0.5: no frame with rates within 10 s")
    else:
        ok("stats --watch 0.5 is top's view: %s" % rates)


def table(text):
    """A table of top's: {first cell: {head: cell}}; heads are split at
    two spaces or more, cells at runs of spaces, with "x.y KiB" joined."""
    lines = [l for l in text.split("\n") if l.strip() and not l.strip().startswith("...")]
    # Heads with a space inside: "IN USE", "DOUBLE FREES".
    fixed = []
    for h in lines[0].split():
        if fixed and (fixed[-1], h) in (("IN", "USE"), ("DOUBLE", "FREES")):
            fixed[-1] += " " + h
        else:
            fixed.append(h)
    rows = {}
    for l in lines[1:]:
        cells = re.findall(r"[-+]?[0-9.]+ (?:B|KiB|MiB|GiB|TiB)\b|\S+", l)
        if len(cells) != len(fixed):
            continue
        rows[cells[0]] = dict(zip(fixed, cells))
    return rows


# ------------------------------------------------------------ holdings ---

def holdings(pd, leak, busy):
    time.sleep(1.5)
    s = pd.stats()
    procs = {p["pid"]: p for p in s["processes"]}
    if leak.pid not in procs:
        fail("the leaking worker is not attached")
        return
    p = procs[leak.pid]
    holds = [h for h in s["holdings"] if h["pid"] == leak.pid]
    if not holds or holds[0]["size"] != 1024 or holds[0]["bytes"] != holds[0]["blocks"] * 1024:
        fail("holdings of the leaker: %s" % holds)
    elif p["in_use_bytes"] != sum(h["bytes"] for h in holds):
        fail("in_use_bytes %d, holdings add up to %d" %
             (p["in_use_bytes"], sum(h["bytes"] for h in holds)))
    elif p["peak_bytes"] < p["in_use_bytes"] or p["growth_1m_bytes"] <= 0:
        fail("peak %d, in use %d, growth %d" %
             (p["peak_bytes"], p["in_use_bytes"], p["growth_1m_bytes"]))
    else:
        ok("holdings: pid %d holds %d blocks of 1024 B, peak %d B, growth %d B" %
           (leak.pid, holds[0]["blocks"], p["peak_bytes"], p["growth_1m_bytes"]))
    c1024 = [c for c in s["classes"] if c["size"] == 1024][0]
    if c1024["peak"] < holds[0]["blocks"]:
        fail("class 1024 peak %d below what one process holds" % c1024["peak"])
    r = pd.ctl("show", str(leak.pid))
    if r.returncode != 0 or "1024" not in r.stdout or "KiB" not in r.stdout:
        fail("show %d: %d %s %s" % (leak.pid, r.returncode, r.stdout, r.stderr))
    else:
        ok("show PID: classes and bytes")
    r = pd.ctl("procs", "--sort=inuse")
    rows = [l.split()[0] for l in r.stdout.split("\n")[1:] if l.strip()]
    if rows[:1] != [str(leak.pid)]:
        fail("procs --sort=inuse: %s first, not the leaker" % rows[:1])
    r = pd.ctl("procs", "--sort=pid")
    rows = [int(l.split()[0]) for l in r.stdout.split("\n")[1:] if l.strip()]
    if rows != sorted(rows):
        fail("procs --sort=pid: %s" % rows)
    else:
        ok("procs --sort=inuse and --sort=pid")
    prom = pd.ctl("stats", "--prometheus").stdout
    want = 'poold_proc_class_in_use_bytes{pid="%d",name="pool_worker",size="1024"}' % leak.pid
    if want not in prom or "poold_class_peak{" not in prom or "poold_proc_peak_bytes{" not in prom:
        fail("Prometheus lacks the holdings: %s" % want)
    else:
        ok("Prometheus: per process and class, peaks")


# ------------------------------------------------------------ warnings ---

def check_warning(pd, kind, subject_re, raise_within, calm, clear_within):
    t = wait_until("%s raised" % kind, raise_within, lambda: warnings_of(pd, kind))
    if t is None:
        return
    w = warnings_of(pd, kind)[0]
    if not re.fullmatch(subject_re, w["subject"]):
        fail("%s: subject %s" % (kind, w["subject"]))
    ok("%s raised in %.1f s: %s" % (kind, t, w["message"]))
    r = pd.ctl("warnings")
    if ("WARNING %s %s: " % (kind, w["subject"])) not in r.stdout:
        fail("poolctl warnings lacks %s: %s" % (kind, r.stdout))
    r = pd.ctl("stats")
    if not r.stdout.startswith("WARNING "):
        fail("poolctl stats does not start with the warnings")
    prom = pd.ctl("stats", "--prometheus").stdout
    if not re.search(r'poold_warning\{kind="%s",subject="[^"]+"\} 1' % kind, prom):
        fail("no poold_warning{kind=\"%s\"} 1 in Prometheus" % kind)
    if ("warning %s" % kind) not in open(pd.log).read():
        fail("the log does not say warning %s" % kind)
    calm()
    t = wait_until("%s cleared" % kind, clear_within, lambda: not warnings_of(pd, kind))
    if t is not None:
        ok("%s cleared %.1f s after its cause went" % (kind, t))
        if "warning %s %s cleared" % (kind, w["subject"]) not in open(pd.log).read():
            fail("the log does not say %s cleared" % kind)


def warnings(tmp_leak_window):
    pd = Poold("w", "--size", "4M", "--max-procs", "4", "--max-threads", "16", "--leak-window",
               "%ds" % tmp_leak_window, notify=True)
    try:
        r = pd.ctl("warnings")
        if r.stdout.strip() != "no warnings":
            fail("a fresh poold warns: %s" % r.stdout)
        # double frees
        w = worker(pd, "--double-free", "40", "--size", "100")
        check_warning(pd, "double_free", r"class_112", 7,
                      lambda: w.send_signal(signal.SIGUSR1), 8)
        stop_worker(w)
        # leak: steady growth over the window
        w = worker(pd, "--leak", "50", "--size", "64")
        check_warning(pd, "leak_suspect", r"pid_%d" % w.pid, tmp_leak_window + 6,
                      lambda: w.send_signal(signal.SIGUSR1), 8)
        stop_worker(w)
        # full pool and an exhausted class
        pd.statuses()  # what was sent so far: not about these
        w = worker(pd, "--fill", "--size", "1000")
        t = wait_until("pool_full raised", 6, lambda: warnings_of(pd, "pool_full"))
        carved_seen = warnings_of(pd, "pool_carved")
        if t is not None:
            msg = warnings_of(pd, "pool_full")[0]["message"]
            if "bookkeeping" not in msg or "MiB" not in msg:
                fail("pool_full does not say data vs bookkeeping: %s" % msg)
            ok("pool_full raised in %.1f s: %s" % (t, msg))
        # STATUS= for systemd carries it (sent every 5 s).
        seen = []

        def status_warns():
            seen.extend(pd.statuses())
            return any(s.startswith("WARNING ") and
                       ("% full:" in s or "allocations refused in the last" in s) for s in seen)
        if wait_until("WARNING in sd_notify STATUS=", 8, status_warns) is not None:
            ok("sd_notify STATUS=%s" % [s for s in seen if s.startswith("WARNING")][-1][:90])
        check_warning(pd, "class_exhausted", r"class_1024", 6,
                      lambda: w.send_signal(signal.SIGUSR1), 9)
        if wait_until("pool_full cleared", 4, lambda: not warnings_of(pd, "pool_full")):
            ok("pool_full cleared")
        # The freed blocks' spans go back to the free spans (poold sweeps
        # the idle class), so pool_carved, raised by the fill, clears.
        if not carved_seen:
            fail("pool_carved not raised while the pool was full")
        elif "free" not in carved_seen[0]["message"]:
            fail("pool_carved does not say how much is free: %s" % carved_seen[0]["message"])
        elif wait_until("pool_carved cleared (empty spans swept back)", 6,
                        lambda: not warnings_of(pd, "pool_carved")) is not None:
            ok("pool_carved raised (%s), then cleared by the sweep" % carved_seen[0]["message"])
        seen.clear()

        def status_clean():
            seen.extend(pd.statuses())
            return seen and "% full:" not in seen[-1] and \
                "allocations refused in the last" not in seen[-1]
        if wait_until("STATUS= without pool_full and class_exhausted", 8, status_clean):
            ok("sd_notify STATUS= without them again: %s" % seen[-1][:100])
        stop_worker(w)
        # slots: 3 of 3 process slots (poold holds the fourth)
        ws = [worker(pd, "--seconds", "30", "--iterations", "1000000", "--rounds", "10")
              for _ in range(3)]
        check_warning(pd, "slots", r"procs", 6, lambda: stop_worker(ws[0]), 6)
        for x in ws:
            stop_worker(x)
    finally:
        pd.stop()


# -------------------------------------------------------------- errors ---

def errors():
    def expect(argv, status, text):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                           env=dict(os.environ, POOLD_SOCKET="/nonexistent/poold.sock"))
        name = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))
        if r.returncode != status or text not in r.stderr:
            fail("%s: status %d, stderr %r; want %d and %r" %
                 (name, r.returncode, r.stderr, status, text))
        elif "/" in r.stderr.split(":")[0]:
            fail("%s: the message names the binary by its path: %r" % (name, r.stderr))
        else:
            ok("%s: %s" % (name, r.stderr.strip().split("\n")[0]))
    expect([POOLCTL, "stats", "--json", "--prometheus"], 2,
           "poolctl: stats: --json and --prometheus exclude each other")
    expect([POOLCTL, "stats", "--prometheus", "--json"], 2, "exclude each other")
    expect([POOLCTL, "--bogus"], 2, "poolctl: unknown option '--bogus'")
    expect([POOLCTL, "stats", "--watch"], 2, "poolctl: --watch needs a value")
    expect([POOLCTL, "top", "--sort", "size"], 2,
           "poolctl: --sort wants inuse, growth, allocs or pid, got 'size'")
    expect([POOLCTL, "procs", "--sort=allocs"], 2, "poolctl: procs: --sort wants inuse")
    expect([POOLCTL, "show"], 2, "poolctl: show wants a process id")
    expect([POOLCTL, "show", "x1"], 2, "poolctl: show: 'x1' is not a process id")
    expect([POOLCTL, "top"], 3, "poolctl: cannot reach poold at /nonexistent/poold.sock")
    expect([POOLD, "--size", "40G"], 2, "poold: --size: '40G' is too big: at most 32 GiB")
    expect([POOLD, "--size", "100K"], 2, "poold: --size: '100K' is too small: at least 1 MiB")
    expect([POOLD, "--size", "1M", "--socket", "/nonexistent/s", "--shm-name", "/poold-obs-never"],
           2, "poold: size: 1 MiB is too small for 45 classes, 64 process slots and 256 thread "
           "caches: at least 9.1 MiB (size = 10M)")
    expect([POOLD, "--leak-window", "3s"], 2, "poold: --leak-window: '3s' is not a duration")
    expect([POOLD, "--bogus"], 2, "poold: unknown option '--bogus'")
    expect([POOLD, "--size"], 2, "poold: --size needs a value")


def ping_version():
    pd = Poold("p")
    try:
        r = pd.ctl("ping")
        if r.returncode != 0 or not re.fullmatch(r"poold at \S+ answered in [0-9.]+ ms\n", r.stdout):
            fail("ping: %r" % r.stdout)
        else:
            ok("ping: " + r.stdout.strip())
        r = pd.ctl("version")
        if not re.fullmatch(r"poold \S+ \(segment layout \d+, protocol \d+\) at \S+; "
                            r"poolctl \S+\n", r.stdout):
            fail("version: %r" % r.stdout)
        else:
            ok("version: " + r.stdout.strip())
    finally:
        pd.stop()


def env_names():
    if not PRELOAD:
        print("skip: no libpoolclient-preload.so given: the POOLD_ names are not checked")
        return

    def preload(**env):
        e = dict(os.environ, LD_PRELOAD=PRELOAD, POOLD_SOCKET="/nonexistent/poold.sock",
                 POOLD_PRELOAD_FALLBACK="embedded", POOLD_PRELOAD_VERBOSE="1")
        e.pop("POOLD_EMBEDDED_BYTES", None)
        e.pop("POOL_EMBEDDED_BYTES", None)
        e.update(env)
        r = subprocess.run(["/bin/sh", "-c", "exec cat /dev/null"], env=e, capture_output=True,
                           text=True, timeout=10)
        return "embedded pool" in r.stderr, "glibc" in r.stderr
    # 1T is above any segment: no embedded pool, glibc.
    for env, want in (({"POOLD_EMBEDDED_BYTES": "8M"}, (True, False)),
                      ({"POOLD_EMBEDDED_BYTES": "1T"}, (False, True)),
                      ({"POOL_EMBEDDED_BYTES": "1T"}, (False, True)),
                      ({"POOL_EMBEDDED_BYTES": "8M"}, (True, False)),
                      ({"POOLD_EMBEDDED_BYTES": "8M", "POOL_EMBEDDED_BYTES": "1T"}, (True, False))):
        got = preload(**env)
        if got != want:
            fail("%s: embedded pool %s, glibc %s; want %s" % (env, got[0], got[1], want))
        else:
            ok("%s: %s" % (env, "embedded pool" if got[0] else "glibc"))


def main():
    env_names()
    errors()
    ping_version()
    pd = Poold("t", "--size", "16M", "--leak-window", "10s")
    try:
        busy = worker(pd, "--seconds", "60", "--iterations", "1000000", "--rounds", "200")
        leak = worker(pd, "--leak", "200", "--size", "1000", "--seconds", "60")
        holdings(pd, leak, busy)
        watch(pd)
        top_plain(pd, busy.pid, leak.pid)
        top_pty(pd)
        stop_worker(busy)
        stop_worker(leak)
    finally:
        pd.stop()
    warnings(10)


try:
    main()
finally:
    for c in children:
        if c.poll() is None:
            c.kill()
            c.wait()
if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
print("all observe checks passed")
