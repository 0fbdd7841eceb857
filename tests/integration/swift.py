"""OpenStack Swift with its S3 API (s3api), started on loopback for a test.

Swift is a real object store that checks SigV4 signatures and payload
hashes, so a test against it exercises what a cloud S3 would. It takes 10-20 s
to start on two cores: start it once per test group.

    with SwiftS3() as s3:
        s3.create_bucket("archive")
        s3.endpoint, s3.access_key, s3.secret_key, s3.region
        s3.request("PUT", "archive", "key", b"data")      # a signed request
        s3.botocore_client()                              # an independent client

Everything Swift writes (rings, configs, databases, objects, logs, memcached's
socket) stays inside one temporary folder: every server gets its config path
and swift_dir on its command line, /etc/swift is never read, recon caches and
locks point into the folder, and logs go to files there instead of syslog.
Every process is stopped by pid, with its process group, whatever happens: the
context manager, an atexit hook and a SIGTERM handler stop them, and each child
gets SIGKILL from the kernel if the test process dies without cleaning up."""

import atexit
import ctypes
import datetime
import hashlib
import hmac
import http.client
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import harness

ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
REGION = "us-east-1"
# Virtual-hosted requests name the bucket in the host: BUCKET.localhost:PORT
# (libcurl and systemd's resolver map every *.localhost name to loopback).
STORAGE_DOMAIN = "localhost"

# Runs one Swift WSGI server the way /usr/bin/swift-*-server does, with two
# changes: swift.conf is read from our folder (Swift otherwise always reads
# /etc/swift/swift.conf for the hash prefix and the storage policies), and log
# records go to stderr (our log file) instead of syslog or UDP port 514.
_SERVER_LAUNCHER = r"""
import logging, sys
from swift.common import utils

class NoSyslog(logging.NullHandler):
    def __init__(self, *args, **kwargs):
        super().__init__()

utils.ThreadSafeSysLogHandler = NoSyslog
utils.set_swift_dir(sys.argv[1])
from swift.common.wsgi import run_wsgi
sys.exit(run_wsgi(sys.argv[2], sys.argv[3], verbose=True))
"""

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: the kernel sends SIGKILL to the child when the test process
    dies, so even a test killed with SIGKILL leaves no Swift behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _interpreter_of(program):
    """The interpreter in `program`'s #! line: Swift's Python modules belong to
    the system Python, which need not be the one running the tests."""
    path = shutil.which(program)
    if path is None:
        raise FileNotFoundError(f"{program} not found (scripts/install-deps.sh test "
                                "installs swift-proxy, swift-account, swift-container, "
                                "swift-object and memcached)")
    with open(path, "rb") as f:
        line = f.readline().decode()
    if not line.startswith("#!"):
        raise RuntimeError(f"{path} has no #! line")
    return line[2:].split()


class Daemon:
    """A child process in its own process group, stopped by pid: SIGTERM to the
    group, then SIGKILL. Output goes to `log_path`."""

    def __init__(self, name, argv, log_path, env, cwd):
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env, cwd=cwd, start_new_session=True,
                                         preexec_fn=_die_with_parent)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout=10):
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever the leader did, nothing of its group survives.
        self._signal_group(signal.SIGKILL)
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_text(self, tail=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-tail:]
        except OSError:
            return ""


_running = set()  # SwiftS3 instances to stop at exit
_running_lock = threading.Lock()


def _stop_all_at_exit():
    with _running_lock:
        instances = list(_running)
    for instance in instances:
        instance.stop()


atexit.register(_stop_all_at_exit)


def _exit_on_sigterm(signum, frame):
    # meson test stops a test that overruns its timeout with SIGTERM: turn it
    # into SystemExit so context managers and atexit stop Swift.
    raise SystemExit(128 + signum)


def _uri_encode(text, safe):
    return urllib.parse.quote(text, safe=safe)


def sigv4_headers(method, url, body, access_key, secret_key, region, headers=None,
                  now=None, service="s3"):
    """The headers that sign one request with AWS Signature Version 4
    (Authorization, x-amz-date, x-amz-content-sha256, host), for a URL whose
    path is already URI-encoded. A small independent signer: the harness
    needs no SDK to start Swift or create a bucket."""
    parts = urllib.parse.urlsplit(url)
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    signed = {k.lower(): str(v).strip() for k, v in (headers or {}).items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = amz_date
    signed["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    canonical_query = "&".join(
        f"{_uri_encode(k, '-_.~')}={_uri_encode(v, '-_.~')}" for k, v in sorted(query))
    names = sorted(signed)
    canonical_request = "\n".join([
        method, parts.path or "/", canonical_query,
        "".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names),
        signed["x-amz-content-sha256"]])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                               f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return signed


def _object_path(bucket, key):
    path = "/"
    if bucket:
        path += bucket
        if key is not None:
            path += "/"
    if key is not None:
        path += _uri_encode(key, "/-_.~")
    return path


def _query_string(query):
    return "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote) if query else ""


def object_url(endpoint, bucket=None, key=None, query=None):
    """A path-style URL: endpoint/bucket/key?query, the key URI-encoded once."""
    return endpoint.rstrip("/") + _object_path(bucket, key) + _query_string(query)


def s3_request(endpoint, method, bucket=None, key=None, body=b"", headers=None, query=None,
               access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, timeout=30,
               virtual_hosted=False):
    """One signed request; returns (status, headers dict with lowercase names,
    body bytes). Raises OSError when the connection fails. Path style by
    default; `virtual_hosted` names the bucket in the host instead
    (Host: BUCKET.localhost:PORT), still connecting to `endpoint`."""
    connect = urllib.parse.urlsplit(endpoint)
    if virtual_hosted and bucket:
        url = (f"{connect.scheme}://{bucket}.{STORAGE_DOMAIN}:{connect.port}" +
               _object_path(None, key) + _query_string(query))
    else:
        url = object_url(endpoint, bucket, key, query)
    parts = urllib.parse.urlsplit(url)
    all_headers = sigv4_headers(method, url, body, access_key, secret_key, region, headers)
    conn = http.client.HTTPConnection(connect.hostname, connect.port, timeout=timeout)
    try:
        target = parts.path + ("?" + parts.query if parts.query else "")
        conn.request(method, target, body=body, headers=all_headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


class SwiftS3:
    """Swift (memcached, account, container and object servers, the proxy with
    s3api and tempauth) on free loopback ports in a temporary folder.

    Attributes once started: endpoint ("http://127.0.0.1:PORT", path-style),
    host_endpoint ("http://localhost:PORT": the endpoint for virtual-hosted
    requests to BUCKET.localhost:PORT), access_key, secret_key, region,
    ports (server name -> port), workdir (the folder), logs (server name ->
    log file path)."""

    SERVERS = ("account", "container", "object")

    def __init__(self, workdir=None, start_timeout=90):
        self._own_tmp = None
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.region = REGION
        self.endpoint = self.host_endpoint = None
        self.daemons = []
        self.logs = {}
        self._stopped = True

    # --- life cycle -----------------------------------------------------

    def start(self):
        if self.workdir is None:
            self._own_tmp = harness.scratch_dir("ubiblk-swift-")
            self.workdir = self._own_tmp.name
        self.swift_dir = os.path.join(self.workdir, "etc")
        self.devices = os.path.join(self.workdir, "srv")
        self.log_dir = os.path.join(self.workdir, "log")
        self.cache_dir = os.path.join(self.workdir, "cache")
        self.run_dir = os.path.join(self.workdir, "run")
        for d in (self.swift_dir, os.path.join(self.devices, "d1"), self.log_dir,
                  self.cache_dir, self.run_dir):
            os.makedirs(d, exist_ok=True)
        self.python = _interpreter_of("swift-proxy-server")
        self.ports = {name: harness.free_port() for name in self.SERVERS + ("proxy", "memcached")}
        self.endpoint = f"http://127.0.0.1:{self.ports['proxy']}"
        self.host_endpoint = f"http://{STORAGE_DOMAIN}:{self.ports['proxy']}"

        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and \
                threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
        with _running_lock:
            _running.add(self)
        self._stopped = False
        try:
            self._write_configs()
            self._build_rings()
            self._start_daemons()
            self._wait_ready()
        except BaseException:
            self.stop(keep_logs=True)
            raise
        return self

    def stop(self, keep_logs=False):
        """Stop every process (by pid, with its process group), then remove
        the folder if we made it. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        with _running_lock:
            _running.discard(self)
        for daemon in reversed(self.daemons):
            daemon.stop()
        if keep_logs:
            print(self.log_summary(), flush=True)
        self.daemons = []
        if self._own_tmp is not None:
            self._own_tmp.cleanup()
            self._own_tmp = None
            self.workdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        self.stop(keep_logs=exc_type is not None)

    def log_summary(self):
        """The end of each server's log: evidence for a failed test."""
        out = []
        for daemon in self.daemons:
            out.append(f"--- swift {daemon.name} log ---\n{daemon.log_text()}")
        return "\n".join(out)

    # --- set-up ---------------------------------------------------------

    def _env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "AWS_", "SWIFT_"))}
        env["HOME"] = self.run_dir
        env["TMPDIR"] = self.run_dir
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _common(self, port):
        user = pwd.getpwuid(os.getuid()).pw_name
        return (f"[DEFAULT]\n"
                f"bind_ip = 127.0.0.1\n"
                f"bind_port = {port}\n"
                f"workers = 0\n"
                f"user = {user}\n"
                f"swift_dir = {self.swift_dir}\n"
                f"devices = {self.devices}\n"
                f"mount_check = false\n"
                f"recon_cache_path = {self.cache_dir}\n"
                f"log_level = INFO\n"
                f"log_address = {os.path.join(self.run_dir, 'no-syslog')}\n"
                f"eventlet_debug = false\n"
                f"disable_fallocate = true\n")

    def _write(self, name, text):
        path = os.path.join(self.swift_dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def _write_configs(self):
        self._write("swift.conf",
                    "[swift-hash]\n"
                    f"swift_hash_path_suffix = {secrets.token_hex(8)}\n"
                    f"swift_hash_path_prefix = {secrets.token_hex(8)}\n"
                    "\n[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
        self._write("memcache.conf",
                    f"[memcache]\nmemcache_servers = 127.0.0.1:{self.ports['memcached']}\n")
        for server in self.SERVERS:
            self._write(f"{server}-server.conf",
                        self._common(self.ports[server]) +
                        f"\n[pipeline:main]\npipeline = {server}-server\n"
                        f"\n[app:{server}-server]\nuse = egg:swift#{server}\n")
        self._write("proxy-server.conf",
                    self._common(self.ports["proxy"]) +
                    "\n[pipeline:main]\n"
                    "pipeline = catch_errors proxy-logging cache listing_formats s3api "
                    "tempauth copy slo proxy-logging proxy-server\n"
                    "\n[app:proxy-server]\nuse = egg:swift#proxy\n"
                    "account_autocreate = true\n"
                    "\n[filter:catch_errors]\nuse = egg:swift#catch_errors\n"
                    "\n[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n"
                    "\n[filter:cache]\nuse = egg:swift#memcache\n"
                    f"memcache_servers = 127.0.0.1:{self.ports['memcached']}\n"
                    "\n[filter:listing_formats]\nuse = egg:swift#listing_formats\n"
                    "\n[filter:s3api]\nuse = egg:swift#s3api\n"
                    f"location = {self.region}\n"
                    f"storage_domain = {STORAGE_DOMAIN}\n"
                    "\n[filter:tempauth]\nuse = egg:swift#tempauth\n"
                    "user_test_tester = testing .admin\n"
                    "\n[filter:copy]\nuse = egg:swift#copy\n"
                    "\n[filter:slo]\nuse = egg:swift#slo\n")

    def _build_rings(self):
        builder = shutil.which("swift-ring-builder")
        if builder is None:
            raise FileNotFoundError("swift-ring-builder not found (Debian package swift)")
        log = os.path.join(self.log_dir, "ring-builder.log")
        for server in self.SERVERS:
            path = os.path.join(self.swift_dir, f"{server}.builder")
            for args in (["create", "4", "1", "1"],
                         ["add", f"r1z1-127.0.0.1:{self.ports[server]}/d1", "100"],
                         ["rebalance"]):
                proc = subprocess.run(self.python + [builder, path] + args, env=self._env(),
                                      cwd=self.run_dir, capture_output=True, timeout=60)
                with open(log, "ab") as f:
                    f.write(proc.stdout + proc.stderr)
                # rebalance exits 1 for a warning (e.g. balance could improve)
                if proc.returncode not in (0, 1):
                    raise RuntimeError(f"swift-ring-builder {' '.join(args)} failed: "
                                       f"{(proc.stdout + proc.stderr).decode(errors='replace')}")
            if not os.path.exists(os.path.join(self.swift_dir, f"{server}.ring.gz")):
                raise RuntimeError(f"swift-ring-builder wrote no {server}.ring.gz")

    def _spawn(self, name, argv):
        log_path = os.path.join(self.log_dir, f"{name}.log")
        self.logs[name] = log_path
        daemon = Daemon(name, argv, log_path, self._env(), self.run_dir)
        self.daemons.append(daemon)
        return daemon

    def _start_daemons(self):
        memcached = shutil.which("memcached")
        if memcached is None:
            raise FileNotFoundError("memcached not found (Debian package memcached)")
        argv = [memcached, "-l", "127.0.0.1", "-p", str(self.ports["memcached"]), "-U", "0",
                "-m", "16", "-c", "256"]
        if os.getuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root otherwise
        self._spawn("memcached", argv)
        for server in self.SERVERS + ("proxy",):
            conf = os.path.join(self.swift_dir, f"{server}-server.conf")
            self._spawn(server, self.python + ["-I", "-c", _SERVER_LAUNCHER, self.swift_dir,
                                               conf, f"{server}-server"])

    def _wait_ready(self):
        """Until every server answers: a signed ListBuckets gets 200 (the proxy
        listens, tempauth and s3api load, the account server answers), a
        HEAD of a missing bucket gets 404, and the account, container and
        object servers accept connections (a 404 for a bucket of an account
        not created yet comes without asking the container server, so the
        first CreateBucket could otherwise meet a container server that is
        still starting: 503)."""
        last = "no answer yet"

        def accepts(port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return True
            except OSError:
                return False

        def ready():
            nonlocal last
            for daemon in self.daemons:
                if not daemon.alive():
                    raise RuntimeError(f"swift {daemon.name} exited "
                                       f"({daemon.proc.returncode}) at start")
            try:
                for method, bucket, want in (("GET", None, 200),
                                             ("HEAD", "ubiblk-readiness-probe", 404)):
                    status, _, body = s3_request(self.endpoint, method, bucket, timeout=5)
                    last = f"{method} /{bucket or ''}: HTTP {status}: {body[:300]!r}"
                    if status != want:
                        time.sleep(0.2)
                        return False
            except OSError as e:
                last = str(e)
                return False
            for server in self.SERVERS:
                if not accepts(self.ports[server]):
                    last = f"the {server} server does not accept connections"
                    return False
            return True

        try:
            harness.wait_for(ready, self.start_timeout, "Swift's S3 API to answer")
        except TimeoutError as e:
            raise TimeoutError(f"{e} (last: {last})") from None

    # --- S3 helpers -----------------------------------------------------

    def request(self, method, bucket=None, key=None, body=b"", headers=None, query=None,
                endpoint=None, timeout=30, virtual_hosted=False):
        """A request signed with the tester's credentials, to `endpoint`
        (default: Swift itself; pass a fault proxy's URL to go through it)."""
        return s3_request(endpoint or self.endpoint, method, bucket, key, body, headers, query,
                          self.access_key, self.secret_key, self.region, timeout,
                          virtual_hosted)

    def create_bucket(self, name):
        """Create a bucket (names need 3+ characters); an existing one is fine."""
        status, _, body = self.request("PUT", name)
        if status not in (200, 409) or (status == 409 and b"BucketAlreadyOwnedByYou" not in body):
            raise RuntimeError(f"creating bucket {name}: HTTP {status}: {body[:500]!r}")
        return name

    def put_object(self, bucket, key, data):
        status, headers, body = self.request("PUT", bucket, key, data)
        if status != 200:
            raise RuntimeError(f"PUT {bucket}/{key}: HTTP {status}: {body[:500]!r}")
        return headers.get("etag")

    def get_object(self, bucket, key):
        """The object's bytes, or None when it does not exist."""
        status, _, body = self.request("GET", bucket, key)
        if status == 404:
            return None
        if status != 200:
            raise RuntimeError(f"GET {bucket}/{key}: HTTP {status}: {body[:500]!r}")
        return body

    def list_keys(self, bucket, prefix=""):
        """Every key in the bucket under `prefix` (ListObjectsV2, paginated)."""
        import xml.etree.ElementTree as ET
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        keys, token = [], None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, _, body = self.request("GET", bucket, query=query)
            if status != 200:
                raise RuntimeError(f"listing {bucket}: HTTP {status}: {body[:500]!r}")
            root = ET.fromstring(body)
            keys += [e.text for e in root.iter(ns + "Key")]
            token_el = root.find(ns + "NextContinuationToken")
            if root.findtext(ns + "IsTruncated") != "true" or token_el is None:
                return keys
            token = token_el.text

    def botocore_client(self, endpoint=None, **config):
        """A botocore S3 client for the tester (path style; checksums only
        where S3 requires them, which Swift's s3api understands). `config`
        adds botocore.config.Config settings (retries, timeouts)."""
        import botocore.config
        import botocore.session
        settings = {"s3": {"addressing_style": "path"}, "signature_version": "s3v4"}
        settings.update(config)
        try:
            cfg = botocore.config.Config(request_checksum_calculation="when_required",
                                         response_checksum_validation="when_required",
                                         **settings)
        except TypeError:  # botocore before 1.36 has no such settings
            cfg = botocore.config.Config(**settings)
        session = botocore.session.get_session()
        return session.create_client("s3", region_name=self.region,
                                     endpoint_url=endpoint or self.endpoint,
                                     aws_access_key_id=self.access_key,
                                     aws_secret_access_key=self.secret_key, config=cfg)

    def client_env(self, home):
        """Environment for an aws CLI or another SDK client: the tester's
        credentials, the region, a private HOME (no ~/.aws of the machine's
        user), checksums only where required (newer SDKs otherwise send
        trailing checksums that Swift's s3api does not know)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"HOME": home, "AWS_ACCESS_KEY_ID": self.access_key,
                    "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": self.region,
                    "AWS_REGION": self.region,
                    "AWS_CONFIG_FILE": os.path.join(home, "aws-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "aws-credentials"),
                    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
                    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
                    "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true"})
        return env
