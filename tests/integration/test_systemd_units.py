"""The systemd units (systemd/*.service.in, built into <build>/systemd/):
`systemd-analyze verify` passes on each template, on an instance, and on an
instance with the KEK drop-in of docs/systemd.md, with ExecStart pointing at
this build's binaries; and the check itself fails on deliberately broken
copies (a bad value, a misspelled key, a missing binary, a broken drop-in),
since systemd-analyze only warns, exit status 0, about most mistakes. Each
unit is Type=notify, reads /etc/ubiblk/%i.yaml, and every option its
ExecStart passes is one the binary's --help lists."""

import os
import re
import shutil
import subprocess
import tempfile

import harness

UNITS = {
    "ubiblk-vhost@.service": "vhost-backend",
    "ubiblk-ublk@.service": "ublk-backend",
    "ubiblk-remote-stripe-server@.service": "remote-stripe-server",
}

KEK_DROP_IN = ("[Service]\n"
               "LoadCredential=kek:/etc/ubiblk/disk1.kek\n"
               "Environment=UBIBLK_KEK_ARGS=--kek=%d/kek\n")


def built_unit(name):
    path = os.path.join(harness.BUILD_DIR, "systemd", name)
    with open(path) as f:
        return f.read()


def exec_start(text):
    lines = [l for l in text.splitlines() if l.startswith("ExecStart=")]
    assert len(lines) == 1, lines
    return lines[0][len("ExecStart="):].split()


def for_this_build(text, binary):
    """The unit with ExecStart's binary replaced by this build's (the
    installed path does not exist here, and verify checks it)."""
    installed = exec_start(text)[0]
    assert os.path.basename(installed) == binary, installed
    return text.replace("ExecStart=" + installed, "ExecStart=" + harness.binary(binary))


def verify(unit_path):
    """systemd-analyze verify on one unit file: (ok, output). Not ok when
    it exits non-zero or says anything about this unit or its drop-ins
    (unknown keys and bad values are only warnings to it)."""
    name = os.path.basename(unit_path)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", unit_path],
                          capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(unit_path))
    output = (proc.stdout + proc.stderr).strip()
    about_unit = [l for l in output.splitlines() if name in l or unit_path in l]
    return proc.returncode == 0 and not about_unit, output


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def instance_name(template, instance):
    return template.replace("@.", f"@{instance}.")


def test_units_verify():
    with tempfile.TemporaryDirectory(prefix="ubiblk-units-") as tmp:
        for template, binary in UNITS.items():
            text = for_this_build(built_unit(template), binary)
            for name in (template, instance_name(template, "disk1")):
                ok, output = verify(write(os.path.join(tmp, name), text))
                assert ok, f"{name}: {output}"
            # The KEK drop-in docs/systemd.md tells operators to add.
            instance = os.path.join(tmp, instance_name(template, "disk1"))
            os.makedirs(instance + ".d")
            write(os.path.join(instance + ".d", "kek.conf"), KEK_DROP_IN)
            ok, output = verify(instance)
            assert ok, f"{template} with the KEK drop-in: {output}"


BREAKAGES = [
    ("a bad value", lambda t: t.replace("Type=notify", "Type=notyfy")),
    ("a misspelled key", lambda t: t.replace("NoNewPrivileges=", "NoNewPrivilege=")),
    ("a misspelled section", lambda t: t.replace("[Service]", "[Servce]")),
    ("a missing binary", lambda t: re.sub(r"ExecStart=\S+", "ExecStart=/nonexistent/ubiblk", t)),
]


def test_broken_units_are_caught():
    with tempfile.TemporaryDirectory(prefix="ubiblk-units-") as tmp:
        for template, binary in UNITS.items():
            good = for_this_build(built_unit(template), binary)
            for what, breakage in BREAKAGES:
                broken = breakage(good)
                assert broken != good, f"{what}: the breakage changed nothing in {template}"
                path = write(os.path.join(tmp, instance_name(template, "broken")), broken)
                ok, output = verify(path)
                assert not ok, f"{template} with {what} passed verify: {output!r}"
            # A broken drop-in fails too.
            path = write(os.path.join(tmp, instance_name(template, "dropin")), good)
            os.makedirs(path + ".d", exist_ok=True)
            write(os.path.join(path + ".d", "kek.conf"),
                  KEK_DROP_IN.replace("LoadCredential=", "LoadCredentail="))
            ok, output = verify(path)
            assert not ok, f"{template} with a broken drop-in passed verify: {output!r}"
            shutil.rmtree(path + ".d")


def test_units_start_the_right_binary_the_notify_way():
    for template, binary in UNITS.items():
        text = built_unit(template)
        assert "\nType=notify\n" in text and "\nNotifyAccess=main\n" in text, template
        assert "\nLimitCORE=0\n" in text, template
        argv = exec_start(text)
        assert argv[0] == os.path.join(os.path.dirname(argv[0]), binary), argv
        assert os.path.isabs(argv[0]), argv
        assert argv[1:3] == ["--config", "/etc/ubiblk/%i.yaml"], argv
        assert "$UBIBLK_KEK_ARGS" in argv, argv
        # Every option is one the binary has.
        help_text = subprocess.run([harness.binary(binary), "--help"], capture_output=True,
                                   text=True, timeout=30).stdout
        for arg in argv[1:]:
            if arg.startswith("--"):
                assert re.search(re.escape(arg) + r"\b", help_text), f"{binary}: {arg}"
        assert "--kek" in help_text, binary


if __name__ == "__main__":
    if shutil.which("systemd-analyze") is None:
        raise SystemExit("systemd-analyze not installed (Debian package systemd; "
                         "scripts/install-deps.sh test)")
    harness.main([test_units_verify, test_broken_units_are_caught,
                  test_units_start_the_right_binary_the_notify_way])
