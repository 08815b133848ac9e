"""How fast the command line answers, against a bare interpreter start measured in the same run.

Three commands, each a fresh process, timed from its start to its exit (wall clock), in rounds that take
one sample of each in turn (so that a noisy neighbour slows all of them alike); the figure is each one's
median over the rounds, and its ratio to the median of `python -c pass`:
- `noetl --help` (goal: within 3x): as a user gets it, from noetl.help_cache once the page was printed;
  also without the cache (NOETL_HELP_CACHE=0: Typer and rich build the page), for the record;
- `noetl run FILE` of a one-step noop playbook against a running `noetl dev up` stack (goal: within 4x):
  the process exits once the step succeeded and the execution completed, so its wall time is the time
  to the first step's end plus the exit.

The dev stack is started for the benchmark under a scratch NOETL_HOME (`noetl dev up --api-port 0`) and
stopped at the end (`noetl dev down`), also when a measurement fails; each command gets one warm-up run
that is not counted (it registers the playbook, fills the help cache and the OS's file cache).

Run: `noetl bench cli [--runs N] [--json]` or `python -m evals.benchmarks.cli`.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOALS = {"help": 3.0, "run": 4.0}  # ratio to `python -c pass`, at most (issue 18)
PLAYBOOK = """\
apiVersion: noetl.io/v2
kind: Playbook
metadata: {name: bench-cli-one-step, path: bench/cli/one-step}
workflow:
  - step: only
    tool: {kind: noop}
"""
# settings that would send the commands to another stack than the benchmark's own
FOREIGN = ("NOETL_SERVER_URL", "NOETL_TOKEN", "NOETL_NATS_URL", "NOETL_PG_DSN", "NOETL_BUS_PREFIX",
           "NOETL_POOLS", "NOETL_HELP_CACHE")


class BenchError(Exception):
    """A command the benchmark runs failed: its exit code and the end of its stderr."""


def noetl_command() -> list[str]:
    """The `noetl` console script of this interpreter, else `python -m noetl.cli`."""
    script = Path(sys.executable).with_name("noetl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "noetl.cli"]


def _timed(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds from the start of a process running `argv` to its exit; BenchError unless it exits 0."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, timeout=120)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise BenchError(f"`{' '.join(argv)}` exited {done.returncode}: "
                         f"{done.stderr.decode(errors='replace')[-1000:]}")
    return elapsed


def _figure(samples: list[float]) -> dict[str, Any]:
    return {"median_ms": round(statistics.median(samples), 1), "min_ms": round(min(samples), 1),
            "samples_ms": [round(s, 1) for s in samples]}


def run(runs: int = 10, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The figures of `runs` rounds (see the module's docstring) as one JSON-shaped document."""
    say = progress or (lambda _line: None)
    noetl = noetl_command()
    scratch = Path(tempfile.mkdtemp(prefix="noetl-bench-cli-"))
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env["NOETL_HOME"] = str(scratch / "home")
    env["XDG_CACHE_HOME"] = str(scratch / "cache")  # the help cache starts empty, and goes with the rest
    playbook = scratch / "one_step.yaml"
    playbook.write_text(PLAYBOOK)
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python": ([sys.executable, "-c", "pass"], env),
        "help": ([*noetl, "--help"], env),
        "help_uncached": ([*noetl, "--help"], {**env, "NOETL_HELP_CACHE": "0"}),
        "run": ([*noetl, "run", str(playbook)], env),
    }
    try:
        say(f"starting a dev stack under {scratch / 'home'}")
        up = subprocess.run([*noetl, "dev", "up", "--api-port", "0"], env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            raise BenchError(f"`noetl dev up` exited {up.returncode}: {up.stderr[-2000:]}")
        for argv, command_env in commands.values():  # warm-up, not counted
            _timed(argv, command_env)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(runs):
            for name, (argv, command_env) in commands.items():
                samples[name].append(_timed(argv, command_env))
            say(f"round {round_ + 1}/{runs}: " + ", ".join(f"{n} {s[-1]:.0f} ms" for n, s in samples.items()))
    finally:
        down = subprocess.run([*noetl, "dev", "down"], env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300)
        if down.returncode != 0:
            say(f"`noetl dev down` exited {down.returncode}: {down.stderr[-500:]}")
        shutil.rmtree(scratch, ignore_errors=True)
    figures = {name: _figure(s) for name, s in samples.items()}
    floor = figures["python"]["median_ms"]
    ratios = {name: round(figures[name]["median_ms"] / floor, 2) for name in ("help", "help_uncached", "run")}
    return {
        "runs": runs,
        "command": noetl,
        "python_pass": figures["python"],
        "help": figures["help"],
        "help_uncached": figures["help_uncached"],
        "run": figures["run"],
        "ratios": ratios,
        "goals": dict(GOALS),
        "met": {name: ratios[name] <= goal for name, goal in GOALS.items()},
    }


def format_report(result: dict[str, Any]) -> str:
    floor = result["python_pass"]["median_ms"]
    lines = [f"command line: medians of {result['runs']} runs each (wall time, process start to exit)",
             f"  python -c pass        {floor:8.1f} ms"]
    rows = (("help", "noetl --help"), ("help_uncached", "  without help cache"),
            ("run", "noetl run (1 step)"))
    for name, label in rows:
        line = f"  {label:<21} {result[name]['median_ms']:8.1f} ms  x{result['ratios'][name]:.2f}"
        if name in result["goals"]:
            goal = result["goals"][name]
            line += f"  (goal <= {goal:g}x: {'met' if result['met'][name] else 'MISSED'})"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
