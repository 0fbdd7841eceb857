#!/usr/bin/env python3
"""The Debian package, as an operator gets it: scripts/build-deb.sh builds it
(debian/, dpkg-buildpackage -b, lintian), then

  - its Depends come from shlibs: every shared library the binaries link
    (libc6, liburing2, libssl3, ...), while debian/control names none;
  - lintian reports no error (checked here again, not only by the script);
  - every file lies where Debian expects it (/usr, /lib/systemd/system), and
    the package starts no service of its own: template units have nothing
    to start until an operator enables an instance;
  - unpacked into a throw-away root (dpkg-deb -x: nothing changes on this
    machine), every ROOT/usr/bin/* prints "NAME VERSION" for --version;
  - one real job: ROOT/usr/bin/vhost-backend serves a temporary disk and
    ROOT/usr/bin/ubiblk-bench verifies it through two queues;
  - then the real thing: apt installs the .deb on this machine, the
    installed commands print their version and run the same job, apt purges
    it and no file of it is left (an ubiblk already installed here is left
    alone: the test fails, saying so).

Run once by scripts/test.sh, in the release pass: the package is its own
build (-Dtests=false, Debian's flags), so a sanitizer pass would not test
anything more. The package is left in build-deb/ for `apt install`."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

TOP = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402

MULTIPLIER = int(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1"))
OUT_DIR = os.path.join(TOP, "build-deb")
# A full compile of the project on a busy 2-core machine, then lintian.
BUILD_TIMEOUT = 1800 * MULTIPLIER
# Runtime packages the binaries' libraries belong to (dpkg-shlibdeps finds
# them from the ELF files; none is written in debian/control).
SHARED_LIBRARY_PACKAGES = ("libc6", "liburing2", "libssl3", "libyaml-0-2", "libgcrypt20",
                           "libjansson4", "libcurl4", "libsnappy1v5", "libedit2")

package = {}  # "deb": path, "version": upstream version, "root": unpacked tree


def run(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout * MULTIPLIER,
                          **kw)


def test_build_deb():
    proc = subprocess.run([os.path.join(TOP, "scripts", "build-deb.sh"), OUT_DIR],
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    assert proc.returncode == 0, \
        f"build-deb.sh exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    deb = proc.stdout.strip().splitlines()[-1]
    assert deb.endswith(".deb") and os.path.isfile(deb), f"last line is not a .deb: {deb!r}"
    version = run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()
    assert re.fullmatch(r"[0-9][0-9.]*-[0-9]+", version), f"Version {version!r}"
    package["deb"] = deb
    package["version"] = version.rsplit("-", 1)[0]
    print(proc.stdout.strip())


def test_depends_from_shlibs():
    with open(os.path.join(TOP, "debian", "control")) as f:
        control = f.read()
    depends_lines = re.findall(r"^Depends:(.*)$", control, re.M)
    assert [d.strip() for d in depends_lines] == ["${shlibs:Depends}, ${misc:Depends}"], \
        f"debian/control Depends should be substvars only: {depends_lines}"
    depends = run(["dpkg-deb", "-f", package["deb"], "Depends"]).stdout
    names = {d.split()[0] for d in depends.split(",") if d.strip()}
    missing = [p for p in SHARED_LIBRARY_PACKAGES if p not in names]
    assert not missing, f"Depends lacks {missing}: {depends!r}"


def test_lintian_no_errors():
    proc = run(["lintian", "--fail-on", "none", package["deb"]], timeout=600)
    tags = [l for l in proc.stdout.splitlines() if re.match(r"[EWIPX]: ", l)]
    errors = [l for l in tags if l.startswith("E: ")]
    assert proc.returncode == 0 and not errors, f"lintian: {proc.stdout}{proc.stderr}"
    print(f"lintian: {len(tags)} tags: " + ("; ".join(tags) or "none"))


def test_file_places():
    listing = run(["dpkg-deb", "-c", package["deb"]]).stdout
    paths = [line.split()[5] for line in listing.splitlines()]
    files = [p for p in paths if not p.endswith("/")]
    stray = [p for p in files if not p.startswith(("./usr/bin/", "./usr/share/", "./lib/systemd/"))]
    assert not stray, f"files outside /usr/bin, /usr/share and /lib/systemd: {stray}"
    assert any(p.startswith("./usr/bin/") for p in files), "no binaries"
    # dh_installsystemd enables and starts plain units; a template unit
    # (NAME@.service) needs an instance name, so nothing may start it.
    with tempfile.TemporaryDirectory(prefix="ubiblk-deb-control-", dir=OUT_DIR) as ctl:
        subprocess.run(["dpkg-deb", "-e", package["deb"], ctl], check=True, timeout=60)
        scripts = {n: open(os.path.join(ctl, n)).read() for n in os.listdir(ctl)
                   if n in ("preinst", "postinst", "prerm", "postrm")}
    units = [os.path.basename(p) for p in files if p.startswith("./lib/systemd/system/")]
    for unit in units:
        assert "@." in unit, f"{unit} is not a template unit: it would start on install"
        for name, text in scripts.items():
            assert unit not in text, f"{name} acts on {unit}:\n{text}"
    print(f"{len(files)} files; units: {', '.join(units) or 'none'}; "
          f"maintainer scripts: {', '.join(sorted(scripts)) or 'none'}")


def test_unpacked_binaries_print_version():
    root = tempfile.mkdtemp(prefix="ubiblk-deb-root-", dir=OUT_DIR)
    package["root"] = root
    subprocess.run(["dpkg-deb", "-x", package["deb"], root], check=True, timeout=120)
    bindir = os.path.join(root, "usr", "bin")
    names = sorted(os.listdir(bindir))
    assert "vhost-backend" in names and "ubiblk-bench" in names, names
    for name in names:
        proc = run([os.path.join(bindir, name), "--version"], timeout=30)
        first = proc.stdout.splitlines()[0] if proc.stdout else ""
        assert proc.returncode == 0 and first == f"{name} {package['version']}", \
            f"{name} --version: exit {proc.returncode}: {proc.stdout!r} {proc.stderr!r}"
    print(f"--version: {', '.join(names)}")


def serve_and_verify(bindir):
    """BINDIR/vhost-backend serves a temporary disk, BINDIR/ubiblk-bench
    verifies it through two queues, the backend exits 0 on SIGTERM."""
    tmp = tempfile.mkdtemp(prefix="ubiblk-deb-job-", dir=OUT_DIR)  # a real filesystem
    backend = None
    try:
        disk = harness.make_disk(os.path.join(tmp, "disk.raw"), 64 << 20)
        sock = os.path.join(tmp, "vhost.sock")
        rpc_sock = os.path.join(tmp, "rpc.sock")
        config = harness.write_config(os.path.join(tmp, "disk.yaml"), {
            "path": disk, "socket": sock, "rpc_socket_path": rpc_sock,
            "num_queues": 2, "queue_size": 128})
        backend = harness.Process([os.path.join(bindir, "vhost-backend"), "-f", config],
                                  log_path=os.path.join(tmp, "vhost-backend.log"))
        assert harness.wait_until_accepting(sock, backend, 30 * MULTIPLIER,
                                            "the packaged vhost-backend to accept"), \
            "vhost-backend exited at start:\n" + backend.log_text()
        harness.wait_for(lambda: os.path.exists(rpc_sock), 30 * MULTIPLIER, "the RPC socket")
        assert harness.rpc(rpc_sock, "version") == {"version": package["version"]}
        proc = run([os.path.join(bindir, "ubiblk-bench"), "--socket", sock, "--mode", "verify",
                    "--queues", "2", "--iodepth", "8", "--size", "32m", "--seed", "7", "--json"],
                   timeout=300)
        assert proc.returncode == 0, \
            f"ubiblk-bench verify exited {proc.returncode}:\n{proc.stdout}{proc.stderr}\n" \
            + backend.log_text()
        status = backend.stop(signal.SIGTERM)
        assert status == 0, f"vhost-backend exited {status} on SIGTERM:\n" + backend.log_text()
        checked = json.loads(proc.stdout).get("verify", {}).get("blocks_checked")
        assert checked, f"ubiblk-bench verify checked no blocks: {proc.stdout}"
        print(f"ubiblk-bench verify: {checked} blocks checked through {bindir}/vhost-backend")
    finally:
        if backend:
            backend.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_unpacked_vhost_backend_serves_ubiblk_bench():
    serve_and_verify(os.path.join(package["root"], "usr", "bin"))


def package_status():
    """dpkg's status of ubiblk on this machine ("" when dpkg does not know it)."""
    proc = run(["dpkg-query", "-W", "-f=${Status}", "ubiblk"])
    return proc.stdout.strip() if proc.returncode == 0 else ""


def apt_get(*args):
    """apt-get, waiting for the dpkg lock (other jobs on the machine may
    hold it). Not --no-download: apt 2.6 then refuses a local .deb ("Pathname
    to install is not absolute"); the libraries are here already anyway."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = run(["apt-get", "-o", "DPkg::Lock::Timeout=300", "-y", "-q"] + list(args),
               timeout=600, env=env)
    assert proc.returncode == 0, f"apt-get {' '.join(args)}: exit {proc.returncode}:\n" \
        f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"


def test_install_on_machine_then_purge():
    """The real install: apt installs the .deb on this machine (its
    dependencies resolve, no file clashes with another package), the
    installed commands run the same job, then apt purges it and nothing of
    it is left. An ubiblk already installed here is an operator's: the test
    leaves it alone and fails, saying so."""
    assert os.geteuid() == 0, "installing a package needs root (the test command runs as root)"
    before = package_status()
    assert not before or before.endswith("not-installed"), \
        f"ubiblk is installed on this machine ({before}): not replaced by the test; " \
        "`apt purge ubiblk` first"
    listing = run(["dpkg-deb", "-c", package["deb"]]).stdout
    files = ["/" + os.path.normpath(line.split()[5]) for line in listing.splitlines()
             if not line.split()[5].endswith("/")]
    try:
        apt_get("install", "--no-install-recommends", package["deb"])
        assert package_status() == "install ok installed", package_status()
        listed = set(run(["dpkg-query", "-L", "ubiblk"]).stdout.split())
        assert set(files) <= listed, f"dpkg -L lacks {sorted(set(files) - listed)}"
        for path in files:
            if path.startswith("/usr/bin/"):
                proc = run([path, "--version"], timeout=30)
                assert proc.returncode == 0 and proc.stdout.startswith(
                    f"{os.path.basename(path)} {package['version']}\n"), \
                    f"{path} --version: {proc.stdout!r} {proc.stderr!r}"
        serve_and_verify("/usr/bin")
    finally:
        if package_status():
            apt_get("purge", "ubiblk")
    after = package_status()
    assert not after or after.endswith("not-installed"), f"ubiblk still {after} after purge"
    left = [f for f in files if os.path.lexists(f)]
    assert not left, f"left behind by apt purge: {left}"
    print(f"apt install, {len(files)} files, job, apt purge: nothing left")


def main():
    """Each step needs the one before it: stop at the first failure."""
    steps = [test_build_deb, test_depends_from_shlibs, test_lintian_no_errors, test_file_places,
             test_unpacked_binaries_print_version, test_unpacked_vhost_backend_serves_ubiblk_bench,
             test_install_on_machine_then_purge]
    passed = failed = 0
    try:
        for step in steps:
            try:
                step()
                passed += 1
                print(f"ok   {step.__name__}", flush=True)
            except Exception as e:  # noqa: BLE001 - report the failure, run no further step
                failed += 1
                print(f"FAIL {step.__name__}: {type(e).__name__}: {e}", flush=True)
                break
    finally:
        if package.get("root"):
            shutil.rmtree(package["root"], ignore_errors=True)
    not_run = len(steps) - passed - failed
    print(f"{passed} passed, {failed} failed" + (f", {not_run} not run" if not_run else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
