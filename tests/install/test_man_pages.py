"""Man pages: every page renders with `man --warnings` and no warning, the
built pages are what scdoc makes of the sources, every installed command
has a page (and every command page a command), and each command's --help
lists exactly the options its page's OPTIONS section describes."""

import glob
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from install_common import (BUILD_DIR, MAN_SOURCES, TIMEOUT, build_options, help_options,  # noqa: E402
                            installed, installed_commands, man_options)


def render(page):
    """`man --warnings -l page` at 80 columns: (text, warnings)."""
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MAN_KEEP_FORMATTING="")
    env.pop("MANPAGER", None)
    env["PAGER"] = "cat"
    proc = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"man -l {page} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout, proc.stderr


def scdoc(source):
    with open(source, "rb") as f:
        proc = subprocess.run(["scdoc"], stdin=f, capture_output=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"scdoc {source}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def sources():
    found = sorted(glob.glob(os.path.join(MAN_SOURCES, "*.scd")))
    if not found:
        raise AssertionError(f"no man page sources in {MAN_SOURCES}")
    return found


def installed_pages():
    """{page name ("xts.1"): built file} of the man pages the build installs."""
    opts = build_options()
    mandir = os.path.join(opts["prefix"], opts["mandir"])
    return {os.path.basename(dest): src for src, dest in installed().items()
            if dest.startswith(mandir + "/")}


def test_every_source_renders_without_warnings():
    # Every source, installed or not yet (a page may wait for its command).
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources():
            page = os.path.join(tmp, os.path.basename(source)[:-len(".scd")])
            with open(page, "wb") as f:
                f.write(scdoc(source))
            text, warnings = render(page)
            if warnings:
                raise AssertionError(f"{os.path.basename(source)}: man warns:\n{warnings}")
            for heading in ("NAME", "SYNOPSIS" if not page.endswith(".5") else "DESCRIPTION",
                            "SEE ALSO"):
                if f"\n{heading}\n" not in text:
                    raise AssertionError(f"{os.path.basename(page)} has no {heading} section")


def test_built_pages_render_and_match_their_sources():
    pages = installed_pages()
    if "ubiblk.yaml.5" not in pages:
        raise AssertionError(f"ubiblk.yaml.5 is not installed: {sorted(pages)}")
    for name, built in pages.items():
        source = os.path.join(MAN_SOURCES, name + ".scd")
        with open(built, "rb") as f:
            content = f.read()
        # scdoc stamps the date of the run: compare everything else.
        strip = lambda b: [l for l in b.splitlines() if not l.startswith(b".TH ")]  # noqa: E731
        if strip(content) != strip(scdoc(source)):
            raise AssertionError(f"{built} is not scdoc's rendering of {source}: rebuild")
        _, warnings = render(built)
        if warnings:
            raise AssertionError(f"{name}: man warns:\n{warnings}")


def test_every_command_has_a_page_and_every_page_a_command():
    commands = set(installed_commands())
    if len(commands) < 9:
        raise AssertionError(f"only {sorted(commands)} installed to bindir")
    pages = {name[:-2] for name in installed_pages() if name.endswith(".1")}
    if commands - pages:
        raise AssertionError(f"installed without a man page: {sorted(commands - pages)} "
                             "(write docs/man/NAME.1.scd, add NAME to ubiblk_commands)")
    if pages - commands:
        raise AssertionError(f"man pages of commands that are not installed: "
                             f"{sorted(pages - commands)}")


def test_help_and_man_page_list_the_same_options():
    problems = []
    for command, binary in sorted(installed_commands().items()):
        in_help = help_options(binary)
        in_man = man_options(os.path.join(MAN_SOURCES, command + ".1.scd"))
        if in_help != in_man:
            problems.append(f"{command}: only in --help: {sorted(in_help - in_man)}, "
                            f"only in the man page: {sorted(in_man - in_help)}")
        for must in ("-h", "--help", "-V", "--version"):
            if must not in in_help:
                problems.append(f"{command}: --help does not list {must}")
    if problems:
        raise AssertionError("\n".join(problems))


def test_option_parsers_see_what_they_must():
    # The parsers themselves: an option described only in prose, or only in
    # a description line, is not counted; one defined on its own line is.
    with tempfile.TemporaryDirectory() as tmp:
        scd = os.path.join(tmp, "t.1.scd")
        with open(scd, "w") as f:
            f.write("t(1)\n\n# SYNOPSIS\n\n*t* *--not-this*\n\n# OPTIONS\n\n"
                    "*-a*, *--alpha* _N_\n\tNeeds *--beta*.\n\n*--gamma*\n\tx\n\n"
                    "# EXAMPLES\n\n*--nor-this*\n")
        got = man_options(scd)
        if got != {"-a", "--alpha", "--gamma"}:
            raise AssertionError(f"man_options read {sorted(got)}")
        script = os.path.join(tmp, "fake")
        with open(script, "w") as f:
            f.write("#!/bin/sh\ncat <<'END'\nUsage: fake [--not-this]\n\nOptions:\n"
                    "  -a, --alpha N        needs --beta\n"
                    "                       and --delta\n"
                    "      --gamma          x\n  -z                   y\n"
                    "  Without --epsilon nothing.\nEND\n")
        os.chmod(script, 0o755)
        got = help_options(script)
        if got != {"-a", "--alpha", "--gamma", "-z"}:
            raise AssertionError(f"help_options read {sorted(got)}")


if __name__ == "__main__":
    if not os.path.isdir(BUILD_DIR):
        raise SystemExit(f"no build dir {BUILD_DIR}")
    harness.main([
        test_every_source_renders_without_warnings,
        test_built_pages_render_and_match_their_sources,
        test_every_command_has_a_page_and_every_page_a_command,
        test_help_and_man_page_list_the_same_options,
        test_option_parsers_see_what_they_must,
    ])
