"""`python -m benchmarks.worker '<json spec>'`: one task in a fresh process (so its peak memory is
its own); prints one line `BENCH_RESULT <json>`."""

from __future__ import annotations

import json
import logging
import sys
import warnings

from benchmarks.common import Setup
from benchmarks.tasks import TASKS

PREFIX = "BENCH_RESULT "


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(argv[0])
    setup = Setup(spec["mode"], spec["device"], spec["cache_dir"], spec.get("threads")).load()
    result = TASKS[spec["task"]](setup, spec)
    result["load_s"] = setup.timings.get("load_s")
    print(PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
