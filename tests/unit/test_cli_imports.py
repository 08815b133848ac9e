"""The command line starts light: building the app imports no heavy package, `--help` comes from the
help cache once printed, and the constants the help pages spell out match their sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HEAVY = ("control_plane.stack", "control_plane.store", "engine.dsl.model", "engine.runtime.orchestrator",
         "psycopg", "pyarrow", "numpy", "httpx", "nats", "pydantic", "duckdb", "agents.diagnosis.model")


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


def test_building_the_command_line_app_imports_none_of_the_heavy_packages() -> None:
    done = _python("import json, sys\nfrom noetl.cli import get_app\nimport typer\n"
                   "typer.main.get_command(get_app())\nprint(json.dumps(sorted(sys.modules)))")
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert [name for name in HEAVY if name in loaded] == []


def test_the_fast_run_path_imports_neither_typer_nor_rich_nor_any_heavy_package() -> None:
    done = _python("import json, sys\nimport noetl.cli, noetl.fastrun, noetl.progress, engine.protocol.ids\n"
                   "print(json.dumps(sorted(sys.modules)))")
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    unwanted = (*HEAVY, "typer", "rich", "http.client", "typing", "hashlib")
    assert [name for name in unwanted if name in loaded] == []


def test_help_from_the_cache_is_the_page_typer_prints(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "COLUMNS": "100"}
    env.pop("NOETL_HELP_CACHE", None)
    argv = [sys.executable, "-m", "noetl.cli", "dev", "up", "--help"]
    uncached = subprocess.run(argv, cwd=REPO, env={**env, "NOETL_HELP_CACHE": "0"}, capture_output=True,
                              text=True, timeout=120)
    first = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    pages = list((tmp_path / "noetl" / "help").glob("*.txt"))
    second = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert uncached.returncode == first.returncode == second.returncode == 0
    assert "--api-port" in uncached.stdout
    assert uncached.stdout == first.stdout == second.stdout
    assert len(pages) == 1 and pages[0].read_text() == uncached.stdout
    wider = subprocess.run(argv, cwd=REPO, env={**env, "COLUMNS": "140"}, capture_output=True, text=True,
                           timeout=120)
    assert wider.stdout != uncached.stdout  # another terminal width: another page, not the cached one
    assert len(list((tmp_path / "noetl" / "help").glob("*.txt"))) == 2


def test_the_constants_the_help_pages_spell_out_are_the_ones_in_use() -> None:
    from control_plane.services.auth import ROLES
    from engine.plan.planner import DEFAULT_MAX_SOLVE_S
    from noetl.commands import plan
    from policies.model import PROPOSAL_STATES, ProposalState

    assert plan.DEFAULT_MAX_SOLVE_S == DEFAULT_MAX_SOLVE_S
    assert ROLES == ("viewer", "operator", "approver", "admin")
    assert PROPOSAL_STATES == ProposalState.__args__  # type: ignore[attr-defined]
