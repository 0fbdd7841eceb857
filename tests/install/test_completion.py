"""Bash completion: the script is valid bash, registers every command, and
completing "-" gives exactly the options of each installed command's
--help; arguments with fixed values and file arguments complete as such."""

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import harness  # noqa: E402
from install_common import (COMPLETION, TIMEOUT, completion_words, help_options,  # noqa: E402
                            installed_commands)


def test_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", COMPLETION], capture_output=True, text=True,
                          timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"bash -n: {proc.stderr}")


def test_every_command_is_registered():
    commands = sorted(installed_commands())
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c",
                           'source "$1"; shift; complete -p "$@"', "bash", COMPLETION] + commands,
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        raise AssertionError(f"not registered: {proc.stderr}")
    for c in commands:
        if f"-F _ubiblk_complete {c}\n" not in proc.stdout + "\n":
            raise AssertionError(f"{c} is not completed by _ubiblk_complete:\n{proc.stdout}")


def test_options_are_those_of_help():
    problems = []
    for command, binary in sorted(installed_commands().items()):
        offered = set(completion_words(command, [command, "-"], 1))
        listed = help_options(binary)
        if offered != listed:
            problems.append(f"{command}: only completed: {sorted(offered - listed)}, "
                            f"only in --help: {sorted(listed - offered)}")
    if problems:
        raise AssertionError("\n".join(problems))


def test_prefixes_values_and_files():
    got = completion_words("vhost-backend", ["vhost-backend", "--con"], 1)
    if got != ["--config"]:
        raise AssertionError(f"vhost-backend --con<TAB> gave {got}")
    got = completion_words("ubiblk-bench", ["ubiblk-bench", "--mode", "rand"], 2)
    if sorted(got) != ["randread", "randrw", "randwrite"]:
        raise AssertionError(f"ubiblk-bench --mode rand<TAB> gave {got}")
    got = completion_words("xts", ["xts", "--action", ""], 2)
    if sorted(got) != ["decode", "encode"]:
        raise AssertionError(f"xts --action <TAB> gave {got}")
    # A numeric argument offers nothing; archive's -q takes none.
    got = completion_words("init-metadata", ["init-metadata", "-s", ""], 2)
    if got:
        raise AssertionError(f"init-metadata -s <TAB> gave {got}")
    got = completion_words("archive", ["archive", "-q", "--qu"], 2)
    if got != ["--quiet"]:
        raise AssertionError(f"archive -q --qu<TAB> gave {got}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("disk.yaml", "disk.raw"):
            open(os.path.join(tmp, name), "w").close()
        got = completion_words("vhost-backend", ["vhost-backend", "-f", tmp + "/disk.y"], 2)
        if got != [tmp + "/disk.yaml"]:
            raise AssertionError(f"vhost-backend -f .../disk.y<TAB> gave {got}")


if __name__ == "__main__":
    harness.main([
        test_script_is_valid_bash,
        test_every_command_is_registered,
        test_options_are_those_of_help,
        test_prefixes_values_and_files,
    ])
