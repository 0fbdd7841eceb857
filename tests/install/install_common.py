"""Shared by the tests of tests/install: where things are, and how the
options of a command are read from its --help, its man page and its bash
completion."""

import json
import os
import re
import subprocess

BUILD_DIR = os.environ["UBIBLK_BUILD_DIR"]
SOURCE_DIR = os.environ["UBIBLK_SOURCE_DIR"]
MAN_SOURCES = os.path.join(SOURCE_DIR, "docs", "man")
COMPLETION = os.path.join(SOURCE_DIR, "data", "bash-completion", "ubiblk")
EXAMPLES = os.path.join(SOURCE_DIR, "data", "examples")
TIMEOUT = 60 * int(os.environ.get("UBIBLK_TEST_TIMEOUT_MULTIPLIER", "1"))

# An option line of --help: at most 6 spaces, then "-x, --long", "-x" or
# "--long". Descriptions continue further right, so an option they mention
# ("needs --kek") is not taken for one the command has.
HELP_OPTION = re.compile(r"^ {1,6}(?:(-[A-Za-z0-9])(?:, +|(?= )|$))?(--[a-z0-9][a-z0-9-]*)?")
MAN_OPTION = re.compile(r"\*(--?[A-Za-z0-9][A-Za-z0-9-]*)\*")


def build_options():
    out = subprocess.run(["meson", "introspect", "--buildoptions", BUILD_DIR],
                         capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    return {o["name"]: o["value"] for o in json.loads(out)}


def installed():
    """{built file: installed path} of the build (meson introspect)."""
    out = subprocess.run(["meson", "introspect", "--installed", BUILD_DIR],
                         capture_output=True, text=True, check=True, timeout=TIMEOUT).stdout
    return json.loads(out)


def installed_commands():
    """{command name: built binary} of everything installed to bindir."""
    opts = build_options()
    bindir = os.path.join(opts["prefix"], opts["bindir"])
    return {os.path.basename(dest): src for src, dest in installed().items()
            if os.path.dirname(dest) == bindir}


def help_options(binary):
    """The options --help lists, as a set of "-x" and "--long" strings."""
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"{binary} --help exited {proc.returncode}: {proc.stderr}")
    found = set()
    for line in proc.stdout.splitlines():
        m = HELP_OPTION.match(line)
        if m:
            found.update(g for g in m.groups() if g)
    if not found:
        raise AssertionError(f"{binary} --help lists no options:\n{proc.stdout}")
    return found


def man_options(scd_path):
    """The options the OPTIONS section of a scdoc man page describes: the
    bold -x / --long words of its definition lines (not their indented
    descriptions, which mention other options)."""
    section = None
    found = set()
    with open(scd_path) as f:
        for line in f:
            if line.startswith("# "):
                section = line[2:].strip()
                continue
            if section == "OPTIONS" and line.startswith("*-"):
                found.update(MAN_OPTION.findall(line))
    if not found:
        raise AssertionError(f"{scd_path}: no OPTIONS section with options")
    return found


def completion_words(command, words, cword):
    """COMPREPLY of the bash completion for COMP_WORDS=words, COMP_CWORD=cword."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=' + str(cword) +
              '; _ubiblk_complete "$1"; printf "%s\\n" "${COMPREPLY[@]}"')
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", COMPLETION]
                          + list(words), capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0 or proc.stderr:
        raise AssertionError(f"completion of {words} failed ({proc.returncode}): {proc.stderr}")
    return [w for w in proc.stdout.splitlines() if w]
