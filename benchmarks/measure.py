"""Run one command and write its wall time, CPU seconds and peak RSS as JSON to a file.

Why a separate launcher: Linux carries a process's peak RSS across ``exec`` into the child's
``ru_maxrss``, so a command forked straight from the benchmark (which holds a million
sandbox records) would report the benchmark's memory. Forked from this small process instead,
the figure is the command's own (plus at most this launcher's ~10 MB before the exec).

Usage: python -m benchmarks.measure RESULT.json COMMAND [ARG]...
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    result_path, command = argv[0], argv[1:]
    started = time.monotonic()
    proc = subprocess.Popen(command)
    # A benchmark stops a command with SIGTERM (a rate-limited sync after its measured
    # windows): pass it on, and keep waiting for the command to finish.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: proc.send_signal(number))
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    with open(result_path, "w") as out:
        json.dump(
            {
                "returncode": code,
                "wall_s": time.monotonic() - started,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "max_rss_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
            },
            out,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
