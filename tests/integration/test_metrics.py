"""The metrics of vhost-backend (docs/metrics.md), read over the `metrics` RPC
command and the metrics_listen HTTP endpoint and parsed with Debian's
python3-prometheus-client: per-queue ops and bytes equal what ubiblk-bench did
and what `stats` says, histograms are cumulative with _count equal to the ops,
nothing is in flight once the I/O is done, the stripe gauges equal `status`
and the fetch counters `stats`; a Failed stripe and malformed requests are
counted as errors of their kinds; the HTTP endpoint answers 404 / 405 / 400 /
431, closes a slow client without delaying anyone, and only listens on
loopback."""

import os
import re
import socket
import time

from prometheus_client.parser import text_string_to_metric_families

import harness
import test_vhost_protocol as vp

MiB = 1 << 20
STRIPE = 1 * MiB                    # shift 11
DISK_SIZE = 16 * MiB
IMAGE_SIZE = 8 * MiB
MULT = float(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1") or 1)
BUCKET_BOUNDS = [8e-06 * (1 << k) for k in range(18)]
FETCH_BUCKETS = 24


def timeout(seconds):
    return seconds * MULT


def setup(tmp, num_queues=2, **fields):
    image = harness.random_file(os.path.join(tmp, "image.raw"), IMAGE_SIZE, seed=77)
    disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
    meta = os.path.join(tmp, "disk.meta")
    rpc = os.path.join(tmp, "rpc.sock")
    cfg = dict(image_path=image, metadata_path=meta, rpc_socket_path=rpc,
               num_queues=num_queues, queue_size=128, copy_on_read=True,
               metrics_listen="127.0.0.1:0")
    cfg.update(fields)
    be = harness.VhostBackend(tmp, disk, **cfg)
    harness.init_metadata(be.config)
    return be, image, rpc


def http_port(be):
    """The port the endpoint bound (metrics_listen asks for any free one)."""
    found = []

    def logged():
        m = re.search(r"metrics endpoint listening on port (\d+)", be.process.log_text())
        if m:
            found.append(int(m.group(1)))
        return bool(m)
    harness.wait_for(logged, timeout(10), "the metrics endpoint's port in the log")
    return found[0]


def http(port, request, timeout_s=10):
    """Sends raw request bytes; returns (status, headers dict, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout(timeout_s))
    try:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    assert int(headers["content-length"]) == len(body), (headers, len(body))
    assert headers["connection"] == "close", headers
    return status, headers, body


def http_metrics(port):
    status, headers, body = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    return body.decode()


def rpc_metrics(rpc):
    reply = harness.rpc(rpc, "metrics")
    assert list(reply) == ["metrics"], reply
    return reply["metrics"]


def samples(text):
    """{(sample name, sorted label items): value}, and the families' types."""
    out, types = {}, {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out, types


def value(smp, name, **labels):
    return smp[(name, tuple(sorted(labels.items())))]


def check_histogram(smp, name, labels, nbuckets, expected_count):
    """Cumulative buckets at the contract's bounds, +Inf == _count."""
    prev = 0
    for k in range(nbuckets):
        le = 8e-06 * (1 << k)
        matches = [v for (n, lab), v in smp.items() if n == name + "_bucket" and
                   dict(lab).get("le") not in (None, "+Inf") and
                   abs(float(dict(lab)["le"]) - le) < le * 1e-9 and
                   all(dict(lab).get(a) == b for a, b in labels.items())]
        assert len(matches) == 1, (name, labels, le, matches)
        assert matches[0] >= prev, f"{name}{labels} bucket {le} not cumulative"
        prev = matches[0]
    inf = value(smp, name + "_bucket", le="+Inf", **labels)
    count = value(smp, name + "_count", **labels)
    assert inf >= prev and inf == count == expected_count, (name, labels, inf, count,
                                                             expected_count)
    total = value(smp, name + "_sum", **labels)
    # Real I/O takes time, and none of it here takes seconds on average.
    assert (total > 0) == (count > 0) and total < 10 * max(count, 1), (name, labels, total)
    return count


def test_metrics_match_the_io():
    with harness.scratch_dir() as tmp:
        be, _, rpc = setup(tmp)
        with be:
            port = http_port(be)
            code, _, err = harness.run_bench(
                ["--socket", be.socket, "--mode", "write", "--queues", "2", "--iodepth", "4",
                 "--bs", "4k", "--io-count", "1000", "--size", "4m"])
            assert code == 0, err
            code, _, err = harness.run_bench(
                ["--socket", be.socket, "--mode", "verify", "--queues", "2", "--iodepth", "2",
                 "--bs", "64k", "--offset", "4m", "--size", "2m", "--seed", "3"])
            assert code == 0, err
            stats = harness.rpc(rpc, "stats")["stats"]
            status = harness.rpc(rpc, "status")["status"]["stripes"]
            text = rpc_metrics(rpc)
            # Nothing moves once the bench is done: both ways give the same text.
            assert http_metrics(port) == text
            smp, types = samples(text)
            assert types["ubiblk_queue_ops"] == "counter", types
            assert types["ubiblk_queue_request_duration_seconds"] == "histogram", types
            assert types["ubiblk_stripes"] == "gauge", types

            totals = {"read": 0, "write": 0, "flush": 0}
            for q, qs in enumerate(stats["queues"]):
                for op in ("read", "write", "flush"):
                    ops = value(smp, "ubiblk_queue_ops_total", queue=str(q), op=op)
                    assert ops == qs[op + "_ops"], (q, op, ops, qs)
                    totals[op] += ops
                    check_histogram(smp, "ubiblk_queue_request_duration_seconds",
                                    {"queue": str(q), "op": op}, 18, ops)
                assert value(smp, "ubiblk_queue_bytes_total", queue=str(q), op="read") == \
                    qs["bytes_read"]
                assert value(smp, "ubiblk_queue_bytes_total", queue=str(q), op="write") == \
                    qs["bytes_written"]
                assert value(smp, "ubiblk_queue_in_flight", queue=str(q)) == 0
            # verify: 32 blocks of 64k written, flushed, read back.
            assert totals["write"] == 1000 + 32 and totals["read"] == 32, totals
            assert totals["flush"] >= 1, totals
            written = sum(value(smp, "ubiblk_queue_bytes_total", queue=str(q), op="write")
                          for q in range(2))
            assert written == 1000 * 4096 + 32 * 65536, written

            for state in ("total", "source", "fetched"):
                assert value(smp, "ubiblk_stripes", state=state) == status[state], status
            assert value(smp, "ubiblk_stripes", state="failed") == 0
            assert status["fetched"] == 6, status   # stripes 0-5, 4 written, 2 verified

            fetch = stats["fetch"]
            assert value(smp, "ubiblk_fetch_stripes_fetched_total") == fetch["stripes_fetched"]
            assert value(smp, "ubiblk_fetch_bytes_total") == fetch["bytes_fetched"]
            assert value(smp, "ubiblk_fetch_failures_total") == fetch["fetch_failures"] == 0
            assert value(smp, "ubiblk_fetch_stripes_failed_total") == 0
            check_histogram(smp, "ubiblk_fetch_duration_seconds", {}, FETCH_BUCKETS,
                            fetch["stripes_fetched"])
            for kind in ("io", "failed_stripe", "bad_request"):
                assert value(smp, "ubiblk_errors_total", kind=kind) == 0, kind
            info = [lab for (n, lab) in smp if n == "ubiblk_build_info"]
            assert len(info) == 1 and dict(info[0])["version"] == "0.4.0", info
            assert dict(info[0])["xts_engine"], info
            assert be.stop() == 0


def ring_client(be, ram):
    client = vp.VhostUserClient(be.socket)
    vp.handshake(client, ram, 1)
    ram.write(0, bytes(0x20000))
    ring = vp.SplitRing(ram, 0, 0)
    ring.setup(client)
    return client, ring


def test_errors_by_kind():
    with harness.scratch_dir() as tmp:
        be, image, rpc = setup(tmp, num_queues=1)
        with be:
            port = http_port(be)
            # The source loses its second half: fetching stripe 6 fails.
            os.truncate(image, 4 * MiB)
            ram = vp.GuestRam()
            client, ring = ring_client(be, ram)
            try:
                status, _ = ring.request(vp.VIRTIO_BLK_T_IN, 6 * STRIPE // 512, 4096,
                                         vp.DESC_F_WRITE)
                assert status == 1, f"read of a Failed stripe: status {status}"
                # Refused by parsing: past the end, and an unknown type.
                status, _ = ring.request(vp.VIRTIO_BLK_T_IN, DISK_SIZE // 512, 4096,
                                         vp.DESC_F_WRITE)
                assert status == 1, f"read past the end: status {status}"
                status, _ = ring.request(99, 0, 4096, vp.DESC_F_WRITE)
                assert status == 2, f"unknown type: status {status}"
                # A good read still works.
                status, _ = ring.request(vp.VIRTIO_BLK_T_IN, 0, 4096, vp.DESC_F_WRITE)
                assert status == 0, status
            finally:
                ring.close()
                client.close()
                ram.close()
            smp, _ = samples(http_metrics(port))
            assert value(smp, "ubiblk_errors_total", kind="failed_stripe") == 1
            assert value(smp, "ubiblk_errors_total", kind="bad_request") == 2
            assert value(smp, "ubiblk_errors_total", kind="io") == 0
            assert value(smp, "ubiblk_stripes", state="failed") == 1
            fetch = harness.rpc(rpc, "stats")["stats"]["fetch"]
            assert value(smp, "ubiblk_fetch_stripes_failed_total") == \
                fetch["stripes_failed"] == 1, fetch
            assert value(smp, "ubiblk_fetch_failures_total") == fetch["fetch_failures"] > 0
            # Failed and refused requests: counted as submitted (the failed
            # read) or not at all (the refused ones), never left in flight.
            assert value(smp, "ubiblk_queue_ops_total", queue="0", op="read") == 2
            assert value(smp, "ubiblk_queue_in_flight", queue="0") == 0
            check_histogram(smp, "ubiblk_queue_request_duration_seconds",
                            {"queue": "0", "op": "read"}, 18, 2)
            assert be.stop() == 0


def test_http_endpoint_behaviour():
    with harness.scratch_dir() as tmp:
        be, _, rpc = setup(tmp, num_queues=1)
        with be:
            port = http_port(be)
            assert http(port, b"GET /other HTTP/1.1\r\n\r\n")[0] == 404
            assert http(port, b"GET /metricsx HTTP/1.0\r\n\r\n")[0] == 404
            status, headers, _ = http(port, b"POST /metrics HTTP/1.1\r\n\r\n")
            assert status == 405 and headers["allow"] == "GET", (status, headers)
            assert http(port, b"HEAD /metrics HTTP/1.1\r\n\r\n")[0] == 405
            assert http(port, b"nonsense\r\n\r\n")[0] == 400
            assert http(port, b"GET /metrics SPDY/3\r\n\r\n")[0] == 400
            # HTTP/1.0 without headers, and a query string, are fine.
            assert http(port, b"GET /metrics HTTP/1.0\r\n\r\n")[0] == 200
            assert http(port, b"GET /metrics?x=1 HTTP/1.1\n\n")[0] == 200
            assert http(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")[0] \
                == 431

            # A slow client (half a request, then nothing) blocks neither the
            # RPC socket nor other scrapers, and is closed after its deadline.
            slow = socket.create_connection(("127.0.0.1", port), timeout=timeout(20))
            slow.sendall(b"GET /metr")
            start = time.monotonic()
            assert "ubiblk_queue_ops_total" in rpc_metrics(rpc)
            assert "ubiblk_queue_ops_total" in http_metrics(port)
            assert harness.rpc(rpc, "version") == {"version": "0.4.0"}
            assert slow.recv(100) == b"", "the slow client must be closed without a reply"
            waited = time.monotonic() - start
            assert waited < timeout(15), waited   # the deadline is 5 s
            slow.close()
            assert be.stop() == 0


def test_metrics_listen_refuses_non_loopback():
    for listen, why in (("0.0.0.0:9101", "is not a loopback address"),
                        ("192.0.2.1:9101", "is not a loopback address"),
                        ("[::]:9101", "is not a loopback address"),
                        ("[2001:db8::1]:9101", "is not a loopback address"),
                        ("localhost:9101", "not a literal IPv4 address"),
                        ("127.0.0.1", "expected IPv4:port or [IPv6]:port"),
                        ("127.0.0.1:70000", "the port must be"),
                        ("::1:9101", "an IPv6 address needs brackets")):
        with harness.scratch_dir() as tmp:
            disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
            be = harness.VhostBackend(tmp, disk, metrics_listen=listen)
            try:
                be.start()
                raise AssertionError(f"vhost-backend started with metrics_listen {listen}")
            except RuntimeError as e:
                assert f"metrics_listen: {listen}" in str(e) and why in str(e), str(e)
            finally:
                if be.process:
                    be.process.close()


def test_ipv6_loopback_and_no_rpc_socket():
    """[::1] works, and the endpoint needs no RPC socket."""
    with harness.scratch_dir() as tmp:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), DISK_SIZE)
        with harness.VhostBackend(tmp, disk, metrics_listen="[::1]:0") as be:
            port = http_port(be)
            s = socket.create_connection(("::1", port), timeout=timeout(10))
            s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            s.close()
            assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:100]
            smp, _ = samples(data.partition(b"\r\n\r\n")[2].decode())
            # Without metadata and a fetch worker those families are absent.
            assert not any(n.startswith(("ubiblk_stripes", "ubiblk_fetch")) for n, _ in smp)
            assert value(smp, "ubiblk_queue_in_flight", queue="0") == 0
            assert be.stop() == 0


if __name__ == "__main__":
    harness.main([test_metrics_match_the_io, test_errors_by_kind, test_http_endpoint_behaviour,
                  test_metrics_listen_refuses_non_loopback, test_ipv6_loopback_and_no_rpc_socket])
