"""ubiblk-top (docs/top.md): --once --json against a fake RPC server whose two
samples are known (rates, latency percentiles from bucket deltas, hydration
and its time left, computed exactly), the fallback to stats/status/queues
for a backend without the `metrics` command, unreachable and silent
sockets, the command line; against a real vhost-backend driven by
ubiblk-bench; and the live view on a terminal under tmux (two disks, one
missing, values refreshing, a socket vanishing mid-run, q restoring the
terminal)."""

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import harness

MULT = float(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1") or 1)
MiB = 1 << 20

# The contract's latency buckets: powers of two from 8 us, 18 finite bounds.
BOUNDS = [8e-06 * 2 ** i for i in range(18)]


def top(*args, timeout=30):
    proc = subprocess.run([harness.binary("ubiblk-top")] + list(args), capture_output=True,
                          text=True, timeout=timeout * MULT)
    return proc.returncode, proc.stdout, proc.stderr


def top_json(*args, expect_code=0):
    code, out, err = top("--once", "--json", *args)
    assert code == expect_code, f"ubiblk-top exit {code}, wanted {expect_code}: {err}{out}"
    return json.loads(out)


class FakeBackend:
    """A Unix-socket RPC server answering like vhost-backend (docs/rpc.md):
    replies[command] is the list of replies to give in turn (the last one
    repeats); a command without replies gets "unknown command"."""

    def __init__(self, path, replies):
        self.path = path
        self.replies = replies
        self.asked = {}
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _reply(self, line):
        try:
            command = json.loads(line)["command"]
        except (ValueError, KeyError, TypeError):
            return {"error": "invalid request: bad line"}
        with self.lock:
            n = self.asked.get(command, 0)
            self.asked[command] = n + 1
        seq = self.replies.get(command)
        if not seq:
            return {"error": f"unknown command: {command}"}
        return seq[min(n, len(seq) - 1)]

    def _client(self, conn):
        conn.settimeout(10)
        buf = b""
        try:
            while not self.stopping:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    conn.sendall(json.dumps(self._reply(line)).encode() + b"\n")
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join(timeout=10)
        self.sock.close()


def le(i):
    return "+Inf" if i == len(BOUNDS) else repr(BOUNDS[i])


def histogram(name, labels, counts):
    """Prometheus histogram lines; counts: {bucket index: requests in that
    bucket alone} (index len(BOUNDS) is +Inf)."""
    lines, total = [], 0
    for i in range(len(BOUNDS) + 1):
        total += counts.get(i, 0)
        lines.append(f'{name}_bucket{{{labels},le="{le(i)}"}} {total}')
    lines.append(f"{name}_sum{{{labels}}} 0.5")
    lines.append(f"{name}_count{{{labels}}} {total}")
    return lines


def metrics_text(queues, stripes, fetch_bytes):
    """queues: list of {"ops": {op: n}, "bytes": {op: n}, "in_flight": n,
    "hist": {op: {bucket: n}}}."""
    out = ["# HELP ubiblk_queue_ops_total Requests submitted.",
           "# TYPE ubiblk_queue_ops_total counter"]
    for q, d in enumerate(queues):
        for op in ("read", "write", "flush"):
            # labels in either order, as the format allows
            out.append(f'ubiblk_queue_ops_total{{op="{op}",queue="{q}"}} {d["ops"].get(op, 0)}')
    out.append("# TYPE ubiblk_queue_bytes_total counter")
    for q, d in enumerate(queues):
        for op in ("read", "write"):
            out.append(f'ubiblk_queue_bytes_total{{queue="{q}",op="{op}"}} '
                       f'{d["bytes"].get(op, 0)}')
    out.append("# TYPE ubiblk_queue_in_flight gauge")
    for q, d in enumerate(queues):
        out.append(f'ubiblk_queue_in_flight{{queue="{q}"}} {d["in_flight"]}')
    out.append("# TYPE ubiblk_queue_request_duration_seconds histogram")
    for q, d in enumerate(queues):
        for op in ("read", "write", "flush"):
            out += histogram("ubiblk_queue_request_duration_seconds",
                             f'queue="{q}",op="{op}"', d["hist"].get(op, {}))
    out.append("# TYPE ubiblk_stripes gauge")
    for state, n in stripes.items():
        out.append(f'ubiblk_stripes{{state="{state}"}} {n}')
    out += ["# TYPE ubiblk_fetch_bytes_total counter",
            f"ubiblk_fetch_bytes_total {fetch_bytes}",
            f"ubiblk_fetch_stripes_fetched_total {stripes['fetched']}",
            "ubiblk_fetch_failures_total 12",
            f"ubiblk_fetch_stripes_failed_total {stripes['failed']}"]
    out += histogram("ubiblk_fetch_duration_seconds", 'x="1"', {3: 5})
    out += ['ubiblk_errors_total{kind="io"} 0',
            'ubiblk_errors_total{kind="failed_stripe"} 3',
            'ubiblk_errors_total{kind="bad_request"} 0',
            'ubiblk_build_info{version="0.4.0",xts_engine="a \\"quoted\\" \\\\ name"} 1', ""]
    return {"metrics": "\n".join(out)}


# Two samples of a three-queue disk. Between them: queue 0 reads 100
# requests of 4 KiB (60 in bucket 2, 39 in bucket 3, 1 in bucket 9), queue 1
# writes 300 of 64 KiB (150 in bucket 7, 150 over the last bound), queue 2
# does nothing; 50 stripes are fetched. The first sample's buckets hold
# requests elsewhere, so percentiles of the totals (not the deltas) differ.
SAMPLE1 = [
    {"ops": {"read": 1000, "write": 500, "flush": 10},
     "bytes": {"read": 4096000, "write": 2048000}, "in_flight": 3,
     "hist": {"read": {0: 1000}, "write": {10: 500}, "flush": {12: 10}}},
    {"ops": {"write": 200}, "bytes": {"write": 200 * 65536}, "in_flight": 0,
     "hist": {"write": {5: 200}}},
    {"ops": {"read": 7}, "bytes": {"read": 7 * 512}, "in_flight": 0,
     "hist": {"read": {1: 7}}},
]
SAMPLE2 = [
    {"ops": {"read": 1100, "write": 500, "flush": 10},
     "bytes": {"read": 4096000 + 100 * 4096, "write": 2048000}, "in_flight": 5,
     "hist": {"read": {0: 1000, 2: 60, 3: 39, 9: 1}, "write": {10: 500}, "flush": {12: 10}}},
    {"ops": {"write": 500}, "bytes": {"write": 500 * 65536}, "in_flight": 2,
     "hist": {"write": {5: 200, 7: 150, 18: 150}}},
    {"ops": {"read": 7}, "bytes": {"read": 7 * 512}, "in_flight": 0,
     "hist": {"read": {1: 7}}},
]
STRIPES1 = {"total": 4096, "source": 1000, "fetched": 100, "failed": 10}
STRIPES2 = {"total": 4096, "source": 1000, "fetched": 150, "failed": 10}


def close(a, b):
    """Equal up to the last bits of a double (the rates are one division)."""
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1e-300)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def test_once_json_from_metrics():
    with harness.scratch_dir() as tmp:
        path = os.path.join(tmp, "fake.sock")
        replies = {"metrics": [metrics_text(SAMPLE1, STRIPES1, 100 * MiB),
                               metrics_text(SAMPLE2, STRIPES2, 150 * MiB)]}
        with FakeBackend(path, replies) as fake:
            doc = top_json("--interval", "0.3", f"fake={path}")
            check(fake.asked.get("metrics") == 2, f"two samples: {fake.asked}")
        check(doc["interval_seconds"] == 0.3 and len(doc["disks"]) == 1, doc)
        d = doc["disks"][0]
        check(d["name"] == "fake" and d["socket"] == path and d["reachable"] is True
              and d["error"] is None and d["source"] == "metrics", d)
        dt = d["interval_seconds"]
        check(0.3 <= dt < 0.3 + 10 * MULT, f"measured interval {dt}")
        # the disk: 100 reads, 300 writes, no flushes
        check(close(d["read_iops"], 100 / dt) and close(d["write_iops"], 300 / dt)
              and d["flush_iops"] == 0, d)
        check(close(d["read_bytes_per_second"], 100 * 4096 / dt), d)
        check(close(d["write_bytes_per_second"], 300 * 65536 / dt), d)
        check(d["in_flight"] == 7, d)
        # 400 requests: cumulative 60 (b2), 99 (b3), 249 (b7), 250 (b9), 400 (+Inf):
        # rank 200 is in bucket 7, rank 396 past the last bound
        check(d["latency_ops"] == 400, d)
        check(d["latency_p50_seconds"] == BOUNDS[7], d)
        check(d["latency_p99_seconds"] == BOUNDS[17], d)
        q0, q1, q2 = d["queues"]
        check([q["queue"] for q in d["queues"]] == [0, 1, 2], d["queues"])
        check(close(q0["read_iops"], 100 / dt) and q0["write_iops"] == 0, q0)
        check(q0["in_flight"] == 5 and q0["latency_ops"] == 100, q0)
        check(q0["latency_p50_seconds"] == BOUNDS[2] and q0["latency_p99_seconds"] == BOUNDS[3],
              q0)
        check(close(q1["write_iops"], 300 / dt) and q1["in_flight"] == 2, q1)
        check(q1["latency_p50_seconds"] == BOUNDS[7] and q1["latency_p99_seconds"] == BOUNDS[17],
              q1)
        # no requests on queue 2 in the interval: no latency, not zero
        check(q2["read_iops"] == 0 and q2["latency_ops"] == 0, q2)
        check(q2["latency_p50_seconds"] is None and q2["latency_p99_seconds"] is None, q2)
        h = d["hydration"]
        check((h["total"], h["source"], h["fetched"], h["failed"]) == (4096, 1000, 150, 10), h)
        check(close(h["percent"], 100 * 150 / 1000), h)
        check(close(h["fetch_stripes_per_second"], 50 / dt), h)
        check(close(h["fetch_bytes_per_second"], 50 * MiB / dt), h)
        # 840 stripes left (1000 with a source, 150 fetched, 10 failed)
        check(close(h["eta_seconds"], 840 / (50 / dt)), h)


def test_once_text_from_metrics():
    with harness.scratch_dir() as tmp:
        path = os.path.join(tmp, "fake.sock")
        replies = {"metrics": [metrics_text(SAMPLE1, STRIPES1, 0),
                               metrics_text(SAMPLE2, STRIPES2, 0)]}
        with FakeBackend(path, replies):
            code, out, err = top("--once", "--interval", "0.2", f"vm1={path}")
        check(code == 0, err)
        lines = out.splitlines()
        check(lines[0].startswith("ubiblk-top 0.4.0") and "READ/s" in lines[1], out)
        check(lines[2].split()[0] == "vm1", out)
        check([l.split()[:2] for l in lines[3:6]] == [["queue", "0"], ["queue", "1"],
                                                      ["queue", "2"]], out)
        # p50/p99 of queue 0: the 32 us and 64 us bounds; no requests print "-"
        check(lines[3].split()[-2:] == ["32us", "64us"], lines[3])
        check(lines[5].split()[-2:] == ["-", "-"], lines[5])
        check("hydration 150/1000 stripes (15.0%)" in lines[6] and "failed 10" in lines[6],
              lines[6])


def stats_reply(queues, fetched, failed):
    return {"stats": {"queues": queues,
                      "fetch": {"stripes_fetched": fetched, "bytes_fetched": fetched * MiB,
                                "fetch_failures": 0, "stripes_failed": failed,
                                "fetch_latency_us_avg": 10, "fetch_latency_us_max": 20}}}


def test_fallback_without_metrics():
    """A backend without `metrics` (before issue 14): counters from stats, in
    flight from queues, hydration from status; no latency."""
    q = lambda r, w, f, br, bw: {"read_ops": r, "write_ops": w, "flush_ops": f,
                                 "bytes_read": br, "bytes_written": bw}
    replies = {
        "stats": [stats_reply([q(10, 20, 1, 40960, 81920), q(0, 0, 0, 0, 0)], 5, 1),
                  stats_reply([q(30, 25, 3, 122880, 102400), q(4, 0, 0, 2048, 0)], 9, 2)],
        "status": [{"status": {"stripes": {"fetched": 5, "source": 64, "total": 128}}},
                   {"status": {"stripes": {"fetched": 9, "source": 64, "total": 128}}}],
        "queues": [{"queues": [[["read", 0, 8], ["flush"]], [["write", 8, 8]]]}],
        "version": [{"version": "0.4.0"}],
    }
    with harness.scratch_dir() as tmp:
        path = os.path.join(tmp, "old.sock")
        with FakeBackend(path, replies) as fake:
            doc = top_json("--interval", "0.2", path)
            check(fake.asked.get("metrics") == 1 and fake.asked.get("stats") == 2, fake.asked)
        d = doc["disks"][0]
        check(d["name"] == path and d["source"] == "stats", d)
        dt = d["interval_seconds"]
        check(close(d["read_iops"], 24 / dt) and close(d["write_iops"], 5 / dt)
              and close(d["flush_iops"], 2 / dt), d)
        check(close(d["read_bytes_per_second"], (122880 - 40960 + 2048) / dt), d)
        check(d["in_flight"] == 3 and [x["in_flight"] for x in d["queues"]] == [2, 1], d)
        check(d["latency_ops"] is None and d["latency_p50_seconds"] is None
              and d["latency_p99_seconds"] is None, d)
        h = d["hydration"]
        check((h["total"], h["source"], h["fetched"], h["failed"]) == (128, 64, 9, 2), h)
        check(close(h["eta_seconds"], 53 / (4 / dt)), h)
        with FakeBackend(path + "2", replies):
            code, out, _ = top("--once", "--interval", "0.2", path + "2")
        check(code == 0 and "no latency" in out, out)
        check(disk_line(out, "..." + (path + "2")[-17:]), f"the path's tail names the disk: {out}")


def test_unreachable_and_silent_sockets():
    """A missing socket and one that never answers are reported, never hang."""
    with harness.scratch_dir() as tmp:
        missing = os.path.join(tmp, "missing.sock")
        silent_path = os.path.join(tmp, "silent.sock")
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            silent.bind(silent_path)
            silent.listen(16)  # never accepted: connect works, no reply comes
            start = time.monotonic()
            doc = top_json("--interval", "0.1", f"gone={missing}", f"mute={silent_path}",
                           expect_code=1)
            took = time.monotonic() - start
        finally:
            silent.close()
        gone, mute = doc["disks"]
        check(gone["reachable"] is False and "No such file" in gone["error"], gone)
        check(mute["reachable"] is False and "no reply" in mute["error"], mute)
        check(took < 20 * MULT, f"took {took:.1f}s")
        code, out, _ = top("--once", "--interval", "0.1", f"gone={missing}")
        check(code == 1 and "gone" in out and "unreachable" in out, out)
        # a name that is not UTF-8 still gives a whole document
        doc = top_json("--interval", "0.1", "d\udcff=" + missing, expect_code=1)
        check(doc["disks"][0]["name"] == "d?" and "No such file" in doc["disks"][0]["error"],
              doc)


def test_command_line():
    code, out, _ = top("--help")
    check(code == 0 and out.startswith("Usage: ubiblk-top") and "--interval SECONDS" in out
          and "--once" in out and "--json" in out, out)
    code, out, _ = top("--version")
    check(code == 0 and out.startswith("ubiblk-top 0.4.0\nxts engine: "), out)
    for args, why in ((["--json", "x"], "--json needs --once"), ([], "no RPC socket"),
                      (["--interval", "0", "x"], "--interval"),
                      (["--interval", "abc", "x"], "--interval"), (["--bogus", "x"], "")):
        code, out, err = top(*args)
        check(code == 2 and why in err and "Usage: ubiblk-top" in err and out == "",
              f"{args}: {code} {err!r}")


# A real backend lazily serving an image (as test_lazy.py).
STRIPE = MiB
DISK_SIZE = 32 * MiB
IMAGE_SIZE = 20 * MiB + 300 * 1024
SOURCE_STRIPES = (IMAGE_SIZE + STRIPE - 1) // STRIPE
READ_RANGE = 8 * MiB


def lazy_backend(tmp):
    image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_SIZE, seed=99)
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
    rpc = os.path.join(tmp, "rpc.sock")
    be = harness.VhostBackend(tmp, disk, image_path=image,
                              metadata_path=os.path.join(tmp, "disk.meta"),
                              rpc_socket_path=rpc, num_queues=2, queue_size=128,
                              copy_on_read=True)
    harness.init_metadata(be.config)
    return be, rpc


def start_reader(be, seconds):
    """ubiblk-bench reading the first READ_RANGE at random (copy on read
    fetches those stripes, then hydration stays put) for `seconds`."""
    return subprocess.Popen(
        [harness.binary("ubiblk-bench"), "--socket", be.socket, "--mode", "randread",
         "--bs", "4k", "--iodepth", "2", "--queues", "2", "--size", str(READ_RANGE),
         "--completion", "event", "--runtime", str(seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def stop_reader(reader):
    if reader.poll() is None:
        reader.kill()
    reader.wait(timeout=30)
    if reader.stderr:
        reader.stderr.close()


def backend_has_metrics(rpc):
    reply = harness.rpc(rpc, "metrics")
    if "metrics" in reply:
        return True
    check(reply.get("error", "").startswith("unknown command"), reply)
    return False


def test_real_backend():
    with harness.scratch_dir() as tmp:
        be, rpc = lazy_backend(tmp)
        with be:
            reader = start_reader(be, 60)
            try:
                fetched = READ_RANGE // STRIPE
                harness.wait_for(lambda: harness.lazy_status(rpc)["fetched"] == fetched,
                                 30 * MULT, "the read range to be fetched")
                harness.wait_for(
                    lambda: all(q["read_ops"] > 0
                                for q in harness.rpc(rpc, "stats")["stats"]["queues"]),
                    30 * MULT, "reads on both queues")
                doc = top_json("--interval", "1", f"vm={rpc}")
                status = harness.lazy_status(rpc)
                metrics = backend_has_metrics(rpc)
                check(reader.poll() is None, "the reader ended before the sample")
            finally:
                stop_reader(reader)
            d = doc["disks"][0]
            check(d["reachable"] and d["source"] == ("metrics" if metrics else "stats"), d)
            check(d["read_iops"] > 0 and d["write_iops"] == 0, d)
            check(close(d["read_bytes_per_second"], d["read_iops"] * 4096), d)
            check(len(d["queues"]) == 2 and all(q["read_iops"] > 0 for q in d["queues"]), d)
            h = d["hydration"]
            check({k: h[k] for k in ("fetched", "source", "total")} == status, (h, status))
            check(h["source"] == SOURCE_STRIPES and h["fetched"] == READ_RANGE // STRIPE
                  and h["failed"] == 0, h)
            check(close(h["percent"], 100 * h["fetched"] / h["source"]), h)
            # no fetching in the interval (the read range is fetched): no estimate
            check(h["fetch_stripes_per_second"] == 0 and h["eta_seconds"] is None, h)
            if metrics:
                check(d["latency_ops"] > 0, d)
                p50, p99 = d["latency_p50_seconds"], d["latency_p99_seconds"]
                check(p50 in BOUNDS and p99 in BOUNDS and p50 <= p99, d)
                for q in d["queues"]:
                    check(q["latency_ops"] > 0 and q["latency_p50_seconds"] in BOUNDS, q)
            else:
                print("the backend has no metrics command: latency not checked")
                check(d["latency_ops"] is None and d["latency_p50_seconds"] is None, d)
            check(be.stop() == 0, "backend exit status")


class Tmux:
    """A tmux server of its own (-L unique name), killed on exit."""

    def __init__(self, tmp):
        self.tmux = shutil.which("tmux")
        check(self.tmux, "tmux is not installed (scripts/install-deps.sh test)")
        self.name = f"ubiblk-top-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = dict(os.environ, PS1="top-test$ ", HOME=tmp, ENV="")

    def run(self, *args, check_rc=True):
        proc = subprocess.run([self.tmux, "-L", self.name, "-f", "/dev/null"] + list(args),
                              capture_output=True, text=True, timeout=30 * MULT, env=self.env)
        if check_rc and proc.returncode != 0:
            raise RuntimeError(f"tmux {args}: {proc.stderr}")
        return proc.stdout

    def __enter__(self):
        self.run("new-session", "-d", "-x", "120", "-y", "40", "sh")
        # kill-server leaves the socket file behind: removed on exit
        self.socket_path = self.run("display", "-p", "#{socket_path}").strip()
        try:
            # a prompt of our own (dash picks "# " for root whatever PS1
            # says), typed once the shell shows its first one
            self.wait(lambda s: s.strip(), "the shell to start")
            self.keys("PS1='top-test$ '", "Enter")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.run("kill-server", check_rc=False)
        if getattr(self, "socket_path", None) and self.name in self.socket_path:
            try:
                os.unlink(self.socket_path)
            except FileNotFoundError:
                pass

    def screen(self):
        return self.run("capture-pane", "-p")

    def keys(self, *k):
        self.run("send-keys", *k)

    def wait_prompt(self):
        self.wait(lambda s: any(l.rstrip().endswith("top-test$") for l in s.splitlines()),
                  "the shell prompt")

    def wait(self, pred, what, timeout=20):
        try:
            harness.wait_for(lambda: pred(self.screen()), timeout * MULT, what)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; the screen:\n{self.screen()}") from None


def disk_line(screen, name):
    for line in screen.splitlines():
        if line.startswith(name + " "):
            return line
    return None


def test_terminal():
    with harness.scratch_dir() as tmp:
        be, rpc = lazy_backend(tmp)
        missing = os.path.join(tmp, "missing.sock")
        with be, Tmux(tmp) as t:
            reader = start_reader(be, 120)
            try:
                t.wait_prompt()
                t.keys(f"{harness.binary('ubiblk-top')} --interval 0.3 realdisk={rpc} "
                       f"gonedisk={missing}; echo EXIT=$?", "Enter")
                t.wait(lambda s: "DISK" in s and "READ/s" in s, "the header")
                check(t.run("display", "-p", "#{alternate_on}").strip() == "1",
                      "the alternate screen is on")
                t.wait(lambda s: "unreachable" in (disk_line(s, "gonedisk") or ""),
                       "the missing disk shown unreachable")
                # the real disk gets numbers, and they change across refreshes
                seen = set()

                def new_values(s):
                    line = disk_line(s, "realdisk")
                    if line and line.split()[1] not in ("-", "unreachable:"):
                        seen.add(line)
                    return len(seen) >= 3
                t.wait(new_values, "three different refreshes of the real disk")
                screen = t.screen()
                check("  queue 0" in screen and "  queue 1" in screen
                      and "  hydration " in screen, screen)
                check(all(len(l) <= 120 for l in screen.splitlines()), screen)
                # a narrow terminal: lines cut, nothing wraps
                t.run("resize-window", "-x", "50", "-y", "40")
                t.wait(lambda s: s.startswith("ubiblk-top") and
                       all(len(l) <= 50 for l in s.splitlines()) and "realdisk" in s,
                       "the view cut to 50 columns")
                t.run("resize-window", "-x", "120", "-y", "40")
                # the socket disappears mid-run: shown unreachable, the view lives on
                stop_reader(reader)
                check(be.stop() == 0, "backend exit status")
                t.wait(lambda s: "unreachable" in (disk_line(s, "realdisk") or ""),
                       "the stopped disk shown unreachable")
                check(t.run("display", "-p", "#{pane_current_command}").strip() ==
                      "ubiblk-top", "ubiblk-top still runs")
                t.keys("q")
                t.wait(lambda s: "EXIT=0" in s, "ubiblk-top to exit with 0")
                screen = t.screen()
                check("READ/s" not in screen and "top-test$" in screen, screen)
                check(t.run("display", "-p", "#{alternate_on}").strip() == "0",
                      "the alternate screen is left")
                # canonical mode and echo are back: typed text shows, stty agrees
                t.keys("stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e echo | "
                       "tr '\\n' + ; echo", "Enter")
                t.wait(lambda s: "icanon+echo+" in s or "echo+icanon+" in s,
                       "stty showing icanon and echo")
            finally:
                stop_reader(reader)


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def test_terminal_ctrl_c_and_sigterm_restore():
    """Ctrl-C (exit 0) and SIGTERM (exit 143) also leave the alternate screen."""
    with harness.scratch_dir() as tmp, Tmux(tmp) as t:
        missing = os.path.join(tmp, "missing.sock")
        t.wait_prompt()
        t.keys(f"{harness.binary('ubiblk-top')} {missing}; echo EXIT1=$?", "Enter")
        t.wait(lambda s: "unreachable" in s, "the view")
        t.keys("C-c")
        t.wait(lambda s: "EXIT1=0" in s, "ubiblk-top to exit 0 on Ctrl-C")
        check(t.run("display", "-p", "#{alternate_on}").strip() == "0",
              "the alternate screen is left")
        t.keys(f"{harness.binary('ubiblk-top')} {missing}; echo EXIT=$?", "Enter")
        t.wait(lambda s: "unreachable" in s, "the view")
        shell = int(t.run("display", "-p", "#{pane_pid}").strip())
        pids = children(shell)
        check(len(pids) == 1, f"the shell's children: {pids}")
        with open(f"/proc/{pids[0]}/comm") as f:
            check(f.read().strip() == "ubiblk-top", "the shell's child is ubiblk-top")
        os.kill(pids[0], 15)
        t.wait(lambda s: "EXIT=143" in s, "ubiblk-top to exit on SIGTERM")
        check(t.run("display", "-p", "#{alternate_on}").strip() == "0",
              "the alternate screen is left")
        check("READ/s" not in t.screen(), t.screen())


if __name__ == "__main__":
    harness.main([test_once_json_from_metrics, test_once_text_from_metrics,
                  test_fallback_without_metrics, test_unreachable_and_silent_sockets,
                  test_command_line, test_real_backend, test_terminal,
                  test_terminal_ctrl_c_and_sigterm_restore])
