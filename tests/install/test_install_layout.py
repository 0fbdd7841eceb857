"""`meson install --destdir` of this build puts every command, man page,
bash completion and example config where Debian expects them relative to
the prefix (--prefix=/usr: /usr/bin, /usr/share/man/man1 and man5,
/usr/share/bash-completion/completions, /usr/share/doc/ubiblk/examples)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from install_common import (BUILD_DIR, COMPLETION, EXAMPLES, TIMEOUT, build_options,  # noqa: E402
                            installed_commands)


def completions_dir(opts):
    """Where data/meson.build installs completions: bash-completion's
    pkg-config completionsdir under our datadir, else datadir/bash-completion."""
    datadir = os.path.join(opts["prefix"], opts["datadir"])
    proc = subprocess.run(["pkg-config", "--define-variable=datadir=" + datadir,
                           "--variable=completionsdir", "bash-completion"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.strip()
    return os.path.join(datadir, "bash-completion", "completions")


def test_default_directories_are_debians():
    # With --prefix=/usr these are /usr/bin, /usr/share/man, /usr/share.
    opts = build_options()
    for name, want in (("bindir", "bin"), ("mandir", "share/man"), ("datadir", "share")):
        if opts[name] != want:
            raise AssertionError(f"option {name} is {opts[name]!r}, not {want!r}")


def test_install_puts_everything_in_place():
    opts = build_options()
    commands = sorted(installed_commands())
    examples = sorted(os.listdir(EXAMPLES))
    with harness.scratch_dir("ubiblk-install-") as dest:
        proc = subprocess.run(["meson", "install", "-C", BUILD_DIR, "--no-rebuild",
                               "--destdir", dest, "--quiet"],
                              capture_output=True, text=True, timeout=TIMEOUT * 5)
        if proc.returncode != 0:
            raise AssertionError(f"meson install failed: {proc.stdout}{proc.stderr}")

        def at(*parts):
            return os.path.join(dest, opts["prefix"].lstrip("/"), *parts)

        def installed_set(path):
            return set(os.listdir(path)) if os.path.isdir(path) else set()

        expected = {}
        for c in commands:
            expected[at(opts["bindir"], c)] = None
            expected[at(opts["mandir"], "man1", c + ".1")] = None
            expected[os.path.join(dest, completions_dir(opts).lstrip("/"), c)] = COMPLETION
        expected[at(opts["mandir"], "man5", "ubiblk.yaml.5")] = None
        for e in examples:
            expected[at(opts["datadir"], "doc", "ubiblk", "examples", e)] = os.path.join(EXAMPLES, e)
        missing = [p for p in expected if not os.path.isfile(p)]
        if missing:
            raise AssertionError("not installed: " + ", ".join(os.path.relpath(p, dest)
                                                              for p in missing))
        for path, source in expected.items():
            if source:
                with open(path, "rb") as a, open(source, "rb") as b:
                    if a.read() != b.read():
                        raise AssertionError(f"{path} differs from {source}")
        for c in commands:
            if not os.access(at(opts["bindir"], c), os.X_OK):
                raise AssertionError(f"{c} is not executable")
        # Nothing else lands in bindir or man1 (a stray test binary, a page
        # without its command).
        extra_bin = installed_set(at(opts["bindir"])) - set(commands)
        extra_man = installed_set(at(opts["mandir"], "man1")) - {c + ".1" for c in commands}
        if extra_bin or extra_man:
            raise AssertionError(f"unexpected files: {sorted(extra_bin | extra_man)}")
        # The installed man page is the one man finds by name.
        env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80",
                   MANPATH=at(opts["mandir"]))
        shown = subprocess.run(["man", "-P", "cat", "5", "ubiblk.yaml"], capture_output=True,
                               text=True, env=env, timeout=TIMEOUT)
        if shown.returncode != 0 or "DEVICE CONFIG" not in shown.stdout:
            raise AssertionError(f"man 5 ubiblk.yaml from the install failed: {shown.stderr}")


if __name__ == "__main__":
    harness.main([
        test_default_directories_are_debians,
        test_install_puts_everything_in_place,
    ])
