"""`noetl dev cluster up|down|status|cut|restore`: the multi-host topology on one machine."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from noetl.settings import noetl_home

cluster_app = typer.Typer(
    help="A cluster on one machine: N NATS nodes (one JetStream cluster), Postgres, S servers and W worker "
         "hosts (each in a network namespace of its own with --isolate), in the background.",
    no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
WorkerArgument = Annotated[str, typer.Argument(help="The worker host, e.g. worker-0 (see `status`).")]


def cluster_home() -> Path:
    """The cluster's directory: NOETL_HOME/cluster (its state file, logs, stores; one cluster per home)."""
    return noetl_home() / "cluster"


def _run(action: Callable[[], Any]) -> Any:
    """Run `action`; an engine or control plane error is printed on stderr (what, where, how to fix it)
    and the command exits 2."""
    from engine.errors import NoetlError

    try:
        return action()
    except NoetlError as exc:
        print(f"noetl dev cluster: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None


def _secret_key(home: Path) -> str:
    """The cluster's secret key (NOETL_SECRET_KEY, else the key file in its home, made on first use): every
    server and worker host gets it, as every host of a deployment is given the same key."""
    from control_plane.store.secret_key import KEY_FILE_NAME, key_file

    configured = os.environ.get("NOETL_SECRET_KEY", "").strip()
    if configured:
        return configured
    home.mkdir(parents=True, exist_ok=True)
    key_file(home / KEY_FILE_NAME)
    return (home / KEY_FILE_NAME).read_text(encoding="ascii").strip()


def _admin_token(pg_dsn: str, key: str, name: str) -> str:
    """A fresh admin token of the cluster's store (only its hash is kept; shown once). Opening the store
    also applies its migrations, before any server or worker host starts."""
    import asyncio

    from control_plane.services.auth import AuthService
    from control_plane.store import open_store
    from control_plane.store.secret_key import SecretKey

    async def create() -> str:
        store = await open_store(pg_dsn, SecretKey.parse(key, "NOETL_SECRET_KEY"))
        try:
            _, token = await AuthService(store).create_token(name, "admin")
        finally:
            await store.close()
        return token

    return asyncio.run(create())


def _orchestration(pg_dsn: str, key: str) -> dict[str, Any]:
    """GET /api/orchestrators' document, read from the cluster's store: the orchestrator processes and the
    partitions each holds now (docs/runtime.md "Partitions")."""
    import asyncio

    from control_plane.services.orchestrators import OrchestratorsService
    from control_plane.store import open_store
    from control_plane.store.secret_key import SecretKey

    async def read() -> dict[str, Any]:
        store = await open_store(pg_dsn, SecretKey.parse(key, "NOETL_SECRET_KEY"), run_migrations=False)
        try:
            return await OrchestratorsService(store).view()
        finally:
            await store.close()

    return asyncio.run(read())


def _with_partitions(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """The status document with each server's partitions (`partitions`: null when its orchestrator is not
    live) and the partitions nobody holds (`unowned`)."""
    if not doc.get("pg_dsn") or doc.get("status") == "down":
        return doc
    try:
        view = _orchestration(doc["pg_dsn"], key)
    except Exception as exc:  # Postgres down: the rest of the status still says so
        return {**doc, "orchestration_error": str(exc)}
    by_pid = {m["pid"]: m["partitions"] for m in view["members"] if m["live"]}
    components = [{**c, "partitions": by_pid.get(c.get("pid"))} if c["kind"] == "server" else c
                  for c in doc["components"]]
    return {**doc, "components": components, "unowned": view["unowned"]}


def _balanced(doc: dict[str, Any]) -> bool:
    """Every partition held, and every live server holding some: the orchestration is spread."""
    servers = [c for c in doc["components"] if c["kind"] == "server"]
    return doc.get("unowned") == [] and all(c["alive"] and c.get("partitions") for c in servers)


def _print(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(doc, indent=2))
        return
    print(" ".join(f"{k}={v}" for k, v in doc.items() if k != "components" and v not in (None, [], "")))
    for c in doc.get("components", []):
        link = c.get("link") or {}
        where = f" ns={c['namespace']}" if c.get("namespace") else ""
        state = f" link={link['state']}" if link else ""
        urls = " ".join(f"{k}={v}" for k, v in (c.get("urls") or {}).items())
        print(f"  {c['name']:<10} {'alive' if c['alive'] else 'DEAD':<6} pid={c.get('pid')} "
              f"addr={c.get('address')}{where}{state} {urls}".rstrip())


@cluster_app.command("up")
def cluster_up(
    nats: Annotated[int, typer.Option("--nats", min=1, max=63, help="NATS nodes (3 or more: streams get "
                                                                   "3 replicas).")] = 3,
    servers: Annotated[int, typer.Option("--servers", min=1, max=63,
                                         help="`noetl server start` processes, each its API port.")] = 2,
    workers: Annotated[int, typer.Option("--workers", min=0, max=63, help="Worker hosts (`noetl worker "
                                                                         "start`, default pool).")] = 3,
    isolate: Annotated[bool, typer.Option("--isolate", help="Each worker host in a network namespace of its "
                                                            "own (Linux, root or CAP_NET_ADMIN).")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Steps each worker host runs at once.")] = 4,
    wait_s: Annotated[float, typer.Option("--wait", help="How long to wait for every member.")] = 120.0,
    as_json: JsonOption = False,
) -> None:
    """Start the cluster in the background under NOETL_HOME/cluster (Postgres embedded there unless
    NOETL_PG_DSN is set); prints every member and a fresh admin token for the APIs (shown only here)."""
    from engine.runtime.local_cluster import ClusterSpec, LocalCluster, MemberCommands
    from engine.runtime.netns import require_netns

    if isolate:  # before anything is made
        _run(require_netns)
    home = cluster_home()
    key = _run(lambda: _secret_key(home))
    tokens: list[str] = []

    def on_store(pg_dsn: str) -> None:
        tokens.append(_admin_token(pg_dsn, key, "dev-cluster-up"))

    def server(port: int) -> list[str]:
        return [sys.executable, "-m", "noetl.cli", "server", "start", "--host", "127.0.0.1",
                "--port", str(port), "--no-indexer", "--no-agent"]

    def worker() -> list[str]:
        return [sys.executable, "-m", "noetl.cli", "worker", "start", "--pool", "default",
                "--concurrency", str(concurrency)]

    commands = MemberCommands(server=server, worker=worker, env={"NOETL_SECRET_KEY": key}, on_store=on_store)
    spec = ClusterSpec(nats=nats, servers=servers, workers=workers, isolate=isolate)
    cluster = LocalCluster(home)
    pg_dsn = os.environ.get("NOETL_PG_DSN", "").strip() or None
    _run(lambda: cluster.up(spec, commands, pg_dsn=pg_dsn, wait_s=wait_s))
    doc = _await_balanced(cluster, key, wait_s)
    _print({**doc, "admin_token": tokens[0] if tokens else None}, as_json)


def _await_balanced(cluster: Any, key: str, wait_s: float) -> dict[str, Any]:
    """The status once the servers share the partitions (a server joining takes its share from the others
    within seconds: an execution started before may pause while its partition moves)."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        doc = _with_partitions(cluster.status(), key)
        if _balanced(doc):
            return doc
        if time.monotonic() > deadline:
            print(f"noetl dev cluster: the servers did not share the orchestration partitions within "
                  f"{wait_s:g} s (unowned: {doc.get('unowned')}); read the servers' logs under "
                  f"{cluster.home}",
                  file=sys.stderr)
            raise typer.Exit(2)
        time.sleep(0.2)


@cluster_app.command("status")
def cluster_status(as_json: JsonOption = False) -> None:
    """Every member (kind, name, pid, alive, ports and urls, namespace, address, link state) and the API
    urls; exit 0 when all are alive, 1 when no cluster runs, 3 when a member is not alive."""
    from engine.runtime.local_cluster import LocalCluster

    home = cluster_home()
    doc = _run(lambda: LocalCluster(home).status())
    if doc.get("status") != "down":
        doc = _with_partitions(doc, _run(lambda: _secret_key(home)))
    _print(doc, as_json)
    raise typer.Exit({"up": 0, "down": 1}.get(doc["status"], 3))


@cluster_app.command("down")
def cluster_down(as_json: JsonOption = False) -> None:
    """Stop every member and remove the cluster's namespaces, links and state (also after some members
    were killed); idempotent."""
    from engine.runtime.local_cluster import LocalCluster

    doc = _run(lambda: LocalCluster(cluster_home()).down())
    _print(doc, as_json)


@cluster_app.command("cut")
def cluster_cut(
    worker: WorkerArgument,
    for_s: Annotated[float | None, typer.Option("--for", min=0.0, help="Restore the link after this many "
                                                                       "seconds.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Take an isolated worker host's link down: its connections time out, as in a network partition."""
    from engine.runtime.local_cluster import LocalCluster

    cluster = LocalCluster(cluster_home())
    _run(lambda: cluster.cut(worker, for_s))
    _print(_member_doc(cluster, worker), as_json)


@cluster_app.command("restore")
def cluster_restore(worker: WorkerArgument, as_json: JsonOption = False) -> None:
    """Bring a cut worker host's link up again."""
    from engine.runtime.local_cluster import LocalCluster

    cluster = LocalCluster(cluster_home())
    _run(lambda: cluster.restore(worker))
    _print(_member_doc(cluster, worker), as_json)


def _member_doc(cluster: Any, name: str) -> dict[str, Any]:
    member = next(c for c in cluster.status()["components"] if c["name"] == name)
    return {"name": name, "link": member.get("link"), "alive": member["alive"]}


def register(dev_app: typer.Typer) -> None:
    dev_app.add_typer(cluster_app, name="cluster")
