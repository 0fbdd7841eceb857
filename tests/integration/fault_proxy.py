"""An HTTP-aware TCP proxy that injects the faults a real object store shows.

It sits between an S3 client and Swift (or any HTTP server), reads each
request (keep-alive, Content-Length or chunked bodies, Expect: 100-continue),
and either forwards it or, when a fault rule matches, does what a failing
store or network does:

    error     answer `status` (500, 503, 429, ...) with an S3 XML error body
    reset     read the request, then reset the connection (TCP RST)
    stall     read the request and never answer (until the rule is cleared
              or the proxy stops): the client's timeout must fire
    truncate  forward, then send the headers with the full Content-Length and
              only part of the body, and close
    latency   forward after `delay` seconds

    with FaultProxy("127.0.0.1", swift_port, seed=7) as proxy:
        proxy.add_fault("error", status=503, kind="GetObject", fraction=0.2)
        proxy.add_fault("reset", key=r"metadata\\.json$", times=1)
        ... client talks to proxy.endpoint ...
        proxy.counts        # {"forwarded": n, "error": n, "reset": n, ...}
        proxy.events        # [(kind, method, path, action), ...] in order

Rules are tried in the order they were added; the first that matches the
request (kind and key pattern), has uses left (`times`) and wins its seeded
coin toss (`fraction`) decides. One random generator seeded at start makes a
run's decisions reproducible for the same request order.

Request kinds are S3 operation names derived from method and path (a
virtual-hosted request, Host BUCKET.<storage_domain>, counts as if its bucket
led the path): ListBuckets, CreateBucket, HeadBucket, ListObjects,
DeleteBucket, GetObject, PutObject, HeadObject, DeleteObject, Other."""

import random
import re
import socket
import struct
import threading
import time
import http.client
from xml.sax.saxutils import escape

ACTIONS = ("error", "reset", "stall", "truncate", "latency")

_ERROR_CODES = {
    400: ("BadRequest", "Bad request."),
    429: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
    502: ("BadGateway", "Bad gateway."),
    503: ("ServiceUnavailable", "Service is unable to handle request."),
    504: ("GatewayTimeout", "Gateway timeout."),
}

# Hop-by-hop headers the proxy manages itself on each side.
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te",
                "trailer", "upgrade"}


def request_kind(method, path):
    """The S3 operation a path-style request is."""
    path = path.split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    if not parts:
        return "ListBuckets" if method == "GET" else "Other"
    if len(parts) == 1:
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "GET": "ListObjects",
                "DELETE": "DeleteBucket"}.get(method, "Other")
    return {"GET": "GetObject", "PUT": "PutObject", "HEAD": "HeadObject",
            "DELETE": "DeleteObject"}.get(method, "Other")


def request_key(path):
    """The object key of a path-style request ('' for bucket-level ones),
    still URI-encoded as sent."""
    parts = path.split("?", 1)[0].lstrip("/").split("/", 1)
    return parts[1] if len(parts) == 2 else ""


class FaultRule:
    def __init__(self, action, kind=None, key=None, fraction=1.0, times=None, status=503,
                 code=None, message=None, delay=1.0, keep_bytes=None):
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r} (one of {', '.join(ACTIONS)})")
        self.action = action
        self.kinds = {kind} if isinstance(kind, str) else (set(kind) if kind else None)
        self.key = re.compile(key) if key else None
        self.fraction = fraction
        self.times = times  # None: unlimited
        self.status = status
        self.code, self.message = code, message
        self.delay = delay
        self.keep_bytes = keep_bytes  # truncate: bytes of body kept (default: half)
        self.applied = 0

    def matches(self, kind, key):
        if self.kinds is not None and kind not in self.kinds:
            return False
        if self.key is not None and not self.key.search(key):
            return False
        return self.times is None or self.applied < self.times


class _ClientGone(Exception):
    pass


class _Request:
    def __init__(self, method, target, version, headers, body):
        self.method, self.target, self.version = method, target, version
        self.headers = headers  # [(name, value)] as received
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class FaultProxy:
    """Listens on 127.0.0.1:`port` (default: a free port) and forwards to
    upstream_host:upstream_port. Attributes: endpoint, port, counts, events."""

    def __init__(self, upstream_host, upstream_port, seed=0, port=0, upstream_timeout=60,
                 storage_domain="localhost"):
        self.upstream = (upstream_host, upstream_port)
        self.storage_domain = storage_domain
        self.upstream_timeout = upstream_timeout
        self.rng = random.Random(seed)
        self.rules = []
        self.counts = {"requests": 0, "forwarded": 0}
        self.events = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.stall_release = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.threads = []
        self.clients = set()
        self.acceptor = None

    # --- control --------------------------------------------------------

    def add_fault(self, action, **kwargs):
        """Add a rule (see FaultRule's parameters); returns it (rule.applied
        counts its uses)."""
        rule = FaultRule(action, **kwargs)
        with self.lock:
            self.rules.append(rule)
        return rule

    def clear_faults(self):
        """Remove every rule and let stalled requests go (their connections
        are closed without an answer)."""
        with self.lock:
            self.rules = []
        self.stall_release.set()
        with self.lock:
            self.stall_release = threading.Event()

    def count(self, action):
        with self.lock:
            return self.counts.get(action, 0)

    def reset_counts(self):
        with self.lock:
            self.counts = {"requests": 0, "forwarded": 0}
            self.events = []

    def wait_for_count(self, action, n, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(action) >= n:
                return
            time.sleep(0.01)
        raise TimeoutError(f"fault proxy: {action} reached {self.count(action)}, not {n}, "
                           f"in {timeout}s")

    # --- life cycle -----------------------------------------------------

    def start(self):
        self.acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy",
                                         daemon=True)
        self.acceptor.start()
        return self

    def stop(self):
        self.stopping.set()
        self.stall_release.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.acceptor:
            self.acceptor.join(timeout=10)
        for t in list(self.threads):
            t.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- the proxy ------------------------------------------------------

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.clients.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="fault-proxy-conn",
                                 daemon=True)
            self.threads = [x for x in self.threads if x.is_alive()] + [t]
            t.start()

    def _record(self, req, kind, action):
        """Count what was done: "forwarded" for requests passed on untouched,
        the action's name for the others (a delayed request is forwarded too
        but counted as "latency")."""
        with self.lock:
            self.counts[action] = self.counts.get(action, 0) + 1
            self.events.append((kind, req.method, req.target, action))

    def _decide(self, kind, key):
        with self.lock:
            self.counts["requests"] += 1
            for rule in self.rules:
                if rule.matches(kind, key) and self.rng.random() < rule.fraction:
                    rule.applied += 1
                    return rule, self.stall_release
            return None, self.stall_release

    def _serve(self, conn):
        reader = conn.makefile("rb")
        upstream = None
        try:
            while not self.stopping.is_set():
                try:
                    req = self._read_request(conn, reader)
                except _ClientGone:
                    return
                if req is None:
                    return
                path = self._path_style(req)
                kind = request_kind(req.method, path)
                rule, stall_release = self._decide(kind, request_key(path))
                action = rule.action if rule else "forwarded"
                self._record(req, kind, action)
                if action == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if action == "stall":
                    # Hold the connection open without answering.
                    while not self.stopping.is_set() and not stall_release.wait(0.1):
                        pass
                    return
                if action == "error":
                    self._send_error(conn, req, rule)
                else:
                    if action == "latency":
                        time.sleep(rule.delay)
                    if upstream is None:
                        upstream = http.client.HTTPConnection(*self.upstream,
                                                              timeout=self.upstream_timeout)
                    try:
                        status, reason, headers, body = self._forward(upstream, req)
                    except (OSError, http.client.HTTPException):
                        upstream.close()
                        upstream = None
                        return  # the client sees its connection close
                    if action == "truncate":
                        keep = rule.keep_bytes if rule.keep_bytes is not None else len(body) // 2
                        self._send_response(conn, req, status, reason, headers, body[:keep],
                                            content_length=len(body))
                        return
                    self._send_response(conn, req, status, reason, headers, body)
                if (req.header("connection") or "").lower() == "close" or req.version == "HTTP/1.0":
                    return
        except OSError:
            return
        finally:
            if upstream is not None:
                upstream.close()
            with self.lock:
                self.clients.discard(conn)
            try:
                reader.close()
                conn.close()
            except OSError:
                pass

    def _path_style(self, req):
        """The request's target with a virtual-hosted bucket moved into the
        path, for classifying it."""
        host = (req.header("host") or "").rsplit(":", 1)[0]
        suffix = "." + self.storage_domain if self.storage_domain else None
        if suffix and host.endswith(suffix) and len(host) > len(suffix):
            return "/" + host[:-len(suffix)] + req.target
        return req.target

    def _read_request(self, conn, reader):
        line = reader.readline(65537)
        if not line:
            return None
        try:
            method, target, version = line.decode("latin-1").strip().split(" ", 2)
        except ValueError:
            raise _ClientGone() from None
        headers = []
        while True:
            h = reader.readline(65537)
            if not h:
                raise _ClientGone()
            if h in (b"\r\n", b"\n"):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        req = _Request(method, target, version, headers, b"")
        if (req.header("expect") or "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if (req.header("transfer-encoding") or "").lower() == "chunked":
            chunks = []
            while True:
                size_line = reader.readline(65537)
                if not size_line:
                    raise _ClientGone()
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    while reader.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(reader.read(size))
                reader.readline(65537)
            req.body = b"".join(chunks)
        else:
            length = int(req.header("content-length") or 0)
            req.body = reader.read(length) if length else b""
            if len(req.body) != length:
                raise _ClientGone()
        return req

    def _forward(self, upstream, req):
        upstream.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for name, value in req.headers:
            if name.lower() in _HOP_HEADERS or name.lower() in ("content-length", "expect"):
                continue
            upstream.putheader(name, value)
        if req.body or req.method in ("PUT", "POST"):
            upstream.putheader("Content-Length", str(len(req.body)))
        upstream.endheaders(req.body if req.body else None)
        resp = upstream.getresponse()
        body = resp.read()
        if resp.will_close:
            upstream.close()
        return resp.status, resp.reason, resp.getheaders(), body

    def _send_response(self, conn, req, status, reason, headers, body, content_length=None):
        out = [f"HTTP/1.1 {status} {reason}\r\n"]
        for name, value in headers:
            low = name.lower()
            if low in _HOP_HEADERS:
                continue
            if low == "content-length" and req.method != "HEAD":
                continue
            out.append(f"{name}: {value}\r\n")
        has_body = req.method != "HEAD" and status not in (204, 304) and status >= 200
        if has_body:
            length = len(body) if content_length is None else content_length
            out.append(f"Content-Length: {length}\r\n")
        out.append("\r\n")
        conn.sendall("".join(out).encode("latin-1") + (body if has_body else b""))

    def _send_error(self, conn, req, rule):
        code, message = _ERROR_CODES.get(rule.status, ("InternalError", "Injected fault."))
        code, message = rule.code or code, rule.message or message
        with self.lock:
            request_id = f"fault{len(self.events):08d}"
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
                f"<Resource>{escape(req.target.split('?', 1)[0])}</Resource>"
                f"<RequestId>{request_id}</RequestId></Error>").encode()
        reason = http.client.responses.get(rule.status, "Error")
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
        self._send_response(conn, req, rule.status, reason, headers, body)
