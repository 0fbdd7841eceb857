"""Keep docs/benchmarks.md as sections, one per benchmark script, so each
script rewrites only its own section."""

import os
import re

PREAMBLE = ("# Benchmarks\n\nProduced by `scripts/bench.sh`; numbers from runs on this "
            "project's development machine. Re-run to get yours.\n")


def update_section(path, name, heading, body):
    text = open(path).read() if os.path.exists(path) else PREAMBLE
    block = f"<!-- section:{name} -->\n{heading}\n\n{body.rstrip()}\n<!-- /section:{name} -->\n"
    pattern = re.compile(rf"<!-- section:{name} -->.*?<!-- /section:{name} -->\n", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)
