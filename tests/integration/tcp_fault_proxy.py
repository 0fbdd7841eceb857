"""A byte-level TCP proxy that injects network faults, per connection and
per direction, with seeded randomness.

It knows nothing about the protocol it carries (remote stripe protocol, TLS,
HTTP): it counts bytes. Under TLS a corrupted, cut or stalled stream surfaces
as a TLS or connection error in the peers, which is the point.

    with TcpFaultProxy("127.0.0.1", server_port, seed=7) as proxy:
        ... clients connect to proxy.address; every connection is clean ...
        proxy.arm(FaultMix(["reset", "latency"], probability=0.5))
        ... live and new connections get a random ConnectionPlan ...
        proxy.disarm()          # new connections clean again
        proxy.release_stalls()  # stalled connections closed
        proxy.counts            # {"connections": n, "reset": n, ...}: faults that fired

A direction ("up": client to server, "down": server to client) can:

    latency    hold every chunk `latency` seconds before forwarding it
    bandwidth  forward at most `rate` bytes per second
    reset      forward `at` bytes, then reset both sockets (TCP RST)
    truncate   forward `at` bytes, then close both sockets (FIN, no error)
    stall      forward `at` bytes, then nothing more, keeping the sockets
               open (until the peer gives up, release_stalls() or stop())
    garbage    overwrite or insert `length` random bytes at byte `offset`

Byte offsets count from the moment the plan was given to the connection
(arm() gives plans to live connections too), so a client's start-up exchange
made before arm() is never hit.

Each connection's plan comes from random.Random(f"{seed}:{n}") for the n-th
planned connection, so a seed replays the same plans for the same connection
order (the peers' timing still decides which bytes a fault lands on)."""

import collections
import random
import select
import socket
import struct
import threading
import time

KINDS = ("latency", "bandwidth", "reset", "truncate", "stall", "garbage")
TERMINAL = ("reset", "truncate", "stall")
_CHUNK = 64 * 1024
_MAX_QUEUED = 1 << 20  # bytes held per direction before the proxy stops reading


class DirectionPlan:
    """The faults of one direction of one connection."""

    def __init__(self, latency=0.0, rate=None, action=None, at=0, garbage=()):
        assert action in (None,) + TERMINAL, action
        self.latency = latency
        self.rate = rate
        self.action = action
        self.at = at
        self.garbage = list(garbage)  # [(offset, length, "overwrite" | "insert")]

    def kinds(self):
        out = []
        if self.latency:
            out.append("latency")
        if self.rate:
            out.append("bandwidth")
        if self.action:
            out.append(self.action)
        if self.garbage:
            out.append("garbage")
        return out

    def describe(self):
        parts = []
        if self.latency:
            parts.append(f"latency {self.latency * 1000:.0f}ms")
        if self.rate:
            parts.append(f"{self.rate / 1024:.0f}KiB/s")
        if self.action:
            parts.append(f"{self.action}@{self.at}")
        for off, length, mode in self.garbage:
            parts.append(f"garbage {mode} {length}@{off}")
        return ",".join(parts) or "clean"


class ConnectionPlan:
    def __init__(self, up=None, down=None):
        self.up = up or DirectionPlan()
        self.down = down or DirectionPlan()

    def describe(self):
        return f"up[{self.up.describe()}] down[{self.down.describe()}]"


class FaultMix:
    """Which faults a run uses and how often: each connection gets each kind
    with `probability`, in the data direction (`data_direction`, "down" for a
    client reading, "up" for one uploading), or with `other_direction`
    probability (default one in four) in the other one. At most one terminal fault (reset, truncate, stall) per
    direction. `data_span` bounds the byte offsets (about what a connection
    carries); `max_stalls` bounds the stalls of a run (each costs a client
    timeout)."""

    def __init__(self, kinds, probability=0.4, data_direction="down", data_span=4 << 20,
                 max_stalls=None, latency=(0.002, 0.2), rate=(256 << 10, 4 << 20),
                 garbage_length=(1, 64), other_direction=0.25):
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.kinds = list(kinds)
        self.probability = probability
        self.data_direction = data_direction
        self.data_span = data_span
        self.max_stalls = max_stalls
        self.latency = latency
        self.rate = rate
        self.garbage_length = garbage_length
        self.other_direction = other_direction
        self.stalls = 0
        self.lock = threading.Lock()

    def describe(self):
        return f"{'+'.join(self.kinds)} p={self.probability:.2f} dir={self.data_direction}"

    def plan(self, rng):
        plan = ConnectionPlan()
        other = "up" if self.data_direction == "down" else "down"
        for kind in self.kinds:
            if rng.random() >= self.probability:
                continue
            direction = getattr(plan, other if rng.random() < self.other_direction
                                else self.data_direction)
            # The other direction carries little (requests, or short
            # replies): offsets there are small.
            span = self.data_span if direction is getattr(plan, self.data_direction) else 8192
            if kind == "latency":
                direction.latency = rng.uniform(*self.latency)
            elif kind == "bandwidth":
                direction.rate = rng.uniform(*self.rate)
            elif kind == "garbage":
                for _ in range(rng.randint(1, 3)):
                    direction.garbage.append((rng.randrange(span), rng.randint(*self.garbage_length),
                                              rng.choice(("overwrite", "insert"))))
            elif direction.action is None:
                if kind == "stall":
                    with self.lock:
                        if self.max_stalls is not None and self.stalls >= self.max_stalls:
                            continue
                        self.stalls += 1
                direction.action = kind
                direction.at = rng.randrange(span)
        return plan


class _Direction:
    def __init__(self, name, src, dst):
        self.name = name
        self.src, self.dst = src, dst
        self.plan = DirectionPlan()
        self.base = 0          # bytes received when the plan was set
        self.received = 0      # bytes read from src
        self.queue = collections.deque()  # [release time, bytes] or [release time, action]
        self.queued = 0
        self.eof = False       # src sent FIN
        self.shut = False      # FIN passed on to dst
        self.cut = False       # the terminal fault's offset was reached: drop the rest
        self.stalled = False
        self.tokens = 0.0
        self.last = time.monotonic()
        self.garbage_rng = random.Random(0)
        self.counted = set()


class _Connection:
    def __init__(self, proxy, client, upstream, index):
        self.proxy = proxy
        self.index = index
        self.client, self.upstream = client, upstream
        self.up = _Direction("up", client, upstream)
        self.down = _Direction("down", upstream, client)
        self.lock = threading.Lock()
        self.closing = False
        self.plan_description = "clean"

    def set_plan(self, plan, rng):
        with self.lock:
            for d, p in ((self.up, plan.up), (self.down, plan.down)):
                d.plan = p
                d.base = d.received
                d.garbage_rng = random.Random(rng.random())
                d.counted = set()
            self.plan_description = plan.describe()

    # --- the pump ---------------------------------------------------------

    def _fired(self, d, kind):
        if kind not in d.counted:
            d.counted.add(kind)
            self.proxy._count(kind)

    def _on_data(self, d, data, now):
        pos = d.received - d.base  # the plan's offset of data[0]
        d.received += len(data)
        if d.cut:
            return  # a stall's or a cut's bytes after the fault: never sent
        p = d.plan
        if p.garbage:
            buf = bytearray(data)
            shift = 0
            for off, length, mode in p.garbage:
                if pos <= off < pos + len(data):
                    rel = off - pos + shift
                    junk = d.garbage_rng.randbytes(length)
                    if mode == "insert":
                        buf[rel:rel] = junk
                        shift += length
                    else:
                        buf[rel:rel + length] = junk[:len(buf) - rel]
                    self._fired(d, "garbage")
            data = bytes(buf)
        marker = None
        if p.action and pos + len(data) >= p.at:
            data = data[:max(0, p.at - pos)]
            d.cut = True
            marker = p.action
        release = now + p.latency
        if data:
            d.queue.append([release, data])
            d.queued += len(data)
        if marker:
            d.queue.append([release, marker])

    def _send_ready(self, d, now):
        """Sends what latency and bandwidth allow; returns the time to look
        again (None: nothing waits on time), or a terminal action to do."""
        while d.queue and not d.stalled:
            release, item = d.queue[0]
            if release > now:
                return release
            if isinstance(item, str):
                d.queue.popleft()
                self._fired(d, item)
                if item == "stall":
                    d.stalled = True
                    return None
                return item
            chunk = item
            if d.plan.rate:
                d.tokens = min(d.plan.rate * 0.05 + 1024,
                               d.tokens + d.plan.rate * (now - d.last))
                d.last = now
                self._fired(d, "bandwidth")
                allowed = int(d.tokens)
                if allowed <= 0:
                    return now + (1 - d.tokens) / d.plan.rate + 0.001
                chunk = chunk[:allowed]
            if d.plan.latency:
                self._fired(d, "latency")
            try:
                n = d.dst.send(chunk)
            except BlockingIOError:
                return None
            if d.plan.rate:
                d.tokens -= n
            d.queued -= n
            if n == len(item):
                d.queue.popleft()
            else:
                d.queue[0][1] = item[n:]
                if n < len(chunk):
                    return None  # the socket is full: wait until writable
        if not d.queue and d.eof and not d.shut and not d.stalled:
            d.shut = True
            try:
                d.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        return None

    def run(self):
        for s in (self.client, self.upstream):
            s.setblocking(False)
        try:
            self._loop()
        except OSError:
            pass  # a peer reset or vanished: close both sides below
        finally:
            self._close(reset=False)

    def _loop(self):
        dirs = (self.up, self.down)
        while not self.proxy.stopping.is_set() and not self.closing:
            now = time.monotonic()
            wake = now + 0.1
            with self.lock:
                for d in dirs:
                    t = self._send_ready(d, now)
                    if t in ("reset", "truncate"):
                        self._close(reset=(t == "reset"))
                        return
                    if isinstance(t, float):
                        wake = min(wake, t)
            if self.up.eof and self.down.eof and not self.up.queue and not self.down.queue:
                return
            # A client gone while its replies stall: nothing more can happen.
            if self.up.eof and self.down.stalled:
                return
            readers = [d.src for d in dirs if not d.eof and d.queued < _MAX_QUEUED]
            writers = [d.dst for d in dirs
                       if d.queue and not d.stalled and not isinstance(d.queue[0][1], str)
                       and d.queue[0][0] <= now and (not d.plan.rate or d.tokens >= 1)]
            r, w, _ = select.select(readers, writers, [], max(0.0, wake - time.monotonic()))
            now = time.monotonic()
            for d in dirs:
                if d.src in r:
                    try:
                        data = d.src.recv(_CHUNK)
                    except (BlockingIOError, InterruptedError):
                        continue
                    with self.lock:
                        if data:
                            self._on_data(d, data, now)
                        else:
                            d.eof = True
                            if d.cut:
                                d.queue.clear()

    def _close(self, reset):
        self.closing = True
        for s in (self.client, self.upstream):
            try:
                if reset:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            except OSError:
                pass
        self.proxy._forget(self)


class TcpFaultProxy:
    """Listens on 127.0.0.1 (a free port unless `port`) and forwards every
    connection to upstream_host:upstream_port. Attributes: address
    ("127.0.0.1:PORT"), port, counts, plans ([(connection, description)])."""

    def __init__(self, upstream_host, upstream_port, seed=0, port=0):
        self.upstream = (upstream_host, upstream_port)
        self.seed = seed
        self.mix = None
        self.planned = 0
        self.counts = {"connections": 0}
        self.plans = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.connections = set()
        self.threads = []
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.acceptor = None

    # --- control ------------------------------------------------------------

    def arm(self, mix):
        """Plans from `mix` for every live connection and every new one."""
        with self.lock:
            self.mix = mix
            live = list(self.connections)
        for conn in live:
            self._plan(conn)

    def disarm(self):
        """New connections are clean; live ones keep their plans."""
        with self.lock:
            self.mix = None

    def release_stalls(self):
        """Close every connection that stalls (its peers see the close)."""
        with self.lock:
            live = list(self.connections)
        for conn in live:
            if conn.up.stalled or conn.down.stalled:
                conn.closing = True

    def live(self):
        with self.lock:
            return len(self.connections)

    def fault_counts(self):
        with self.lock:
            return {k: v for k, v in self.counts.items() if k != "connections"}

    # --- life cycle -----------------------------------------------------------

    def start(self):
        self.acceptor = threading.Thread(target=self._accept_loop, name="tcp-fault-proxy",
                                         daemon=True)
        self.acceptor.start()
        return self

    def stop(self):
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        if self.acceptor:
            self.acceptor.join(timeout=10)
        for t in list(self.threads):
            t.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- internals ----------------------------------------------------------

    def _count(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def _forget(self, conn):
        with self.lock:
            self.connections.discard(conn)

    def _plan(self, conn):
        with self.lock:
            mix = self.mix
            if mix is None:
                return
            n = self.planned
            self.planned += 1
        rng = random.Random(f"{self.seed}:{n}")
        plan = mix.plan(rng)
        conn.set_plan(plan, rng)
        with self.lock:
            self.plans.append((conn.index, plan.describe()))

    def _accept_loop(self):
        index = 0
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()  # the client sees its connection close
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, upstream, index)
            index += 1
            with self.lock:
                self.connections.add(conn)
                self.counts["connections"] += 1
            self._plan(conn)
            t = threading.Thread(target=conn.run, name="tcp-fault-proxy-conn", daemon=True)
            self.threads = [x for x in self.threads if x.is_alive()] + [t]
            t.start()
