"""The running system in one process: NATS and Postgres (embedded or given), the store, the bus, the
orchestrator and worker pools. `noetl run`, `noetl dev up`, the server and the tests all start it here,
so the embedded stack and a distributed deployment share one code path.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.errors import ControlPlaneError
from control_plane.services.executions import ExecutionService
from control_plane.store import Store, open_store
from control_plane.store.secret_key import SecretKey, load_secret_key
from engine.bus.jetstream import Bus, Failover
from engine.bus.result_objects import ResultObjects, object_reader
from engine.protocol.partitions import PARTITIONS
from engine.runtime.heap import freeze_startup_heap
from engine.runtime.spans import otlp_endpoint

if TYPE_CHECKING:
    from control_plane.store.partitions import PartitionLeaseStore
    from control_plane.supervisor import ServerSupervisor
    from engine.plan.pools import PoolSet
    from engine.runtime.embedded import EmbeddedNats, EmbeddedPostgres
    from engine.runtime.orchestrator import Orchestrator
    from engine.runtime.tracing import OtlpExporter
    from engine.tools.registry import ToolRegistry

log = logging.getLogger(__name__)
PYTHON_WARM = 4  # python interpreters a worker starts with (its pool grows to its concurrency on demand)


@dataclass(frozen=True)
class StackConfig:
    home: Path
    nats_url: str | None = None  # None: start (or reuse) an embedded nats-server under home; may list the
    # servers of a cluster, comma-separated (the bus fails over between them)
    pg_dsn: str | None = None  # None: start (or reuse) an embedded PostgreSQL under home
    secret_key: str | None = None  # NOETL_SECRET_KEY; None: the key file under home
    prefix: str = "noetl"
    orchestrator: bool = True
    workers: dict[str, int] = field(default_factory=lambda: {"default": 4})  # pool -> concurrency
    ack_wait_s: float = 30.0
    worker_processes: bool = False  # run each pool in a process of its own (another core)
    pools: PoolSet | None = None  # the deployment's pools file (capacities, labels); None: none declared
    worker_labels: tuple[str, ...] = ()  # hardware labels the workers started here report
    worker_capacity: dict[str, float] | None = None  # what each worker adds; None: its pool's, or cpu
    google_token_url: str | None = None  # NOETL_GOOGLE_TOKEN_URL: where google_id_token entries are minted
    nats_replicas: int | None = None  # NOETL_NATS_REPLICAS: the streams' replicas; None: 3 on a cluster of 3+
    # the OTEL_* variables (docs/insights.md "Tracing"): spans are exported over OTLP/HTTP when they name
    # an endpoint (OTEL_EXPORTER_OTLP_ENDPOINT); empty: no tracing
    otel: dict[str, str] = field(default_factory=dict)


@functools.lru_cache(maxsize=64)
def _resolve_cached(uri: str, ref_json: str) -> Any:
    import json

    from engine.tools.artifacts import resolve

    return resolve(json.loads(ref_json), read_object=object_reader.read)


def resolve_ref(ref: dict[str, Any]) -> Any:
    """Large results are files or NATS objects (engine.bus.result_objects): read each once per process."""
    import json

    return _resolve_cached(str(ref.get("uri")), json.dumps(ref, sort_keys=True, default=str))


@dataclass
class _Process:
    """A worker process as the supervisor sees it."""

    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def is_running(self) -> bool:
        return self.popen.poll() is None


class Stack:
    """Start with `async with Stack(config) as stack:`; `stack.executions` runs playbooks."""

    def __init__(self, config: StackConfig) -> None:

        self.config = config
        self.nats: EmbeddedNats | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.store: Store | None = None
        self.bus: Bus | None = None
        self.executions: ExecutionService | None = None
        self.key: SecretKey | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._registries: list[ToolRegistry] = []
        self.leases: PartitionLeaseStore | None = None  # this process's share of the orchestration
        self.orchestrator: Orchestrator | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self.result_objects: ResultObjects | None = None
        self.supervisor: ServerSupervisor | None = None
        self.tracer: OtlpExporter | None = None  # the span exporter, when tracing (config.otel)
        self._worker_processes: dict[str, _Process] = {}

    @property
    def nats_url(self) -> str:
        return self.config.nats_url or (self.nats.url if self.nats else "")

    @property
    def pg_dsn(self) -> str:
        return self.config.pg_dsn or (self.postgres.dsn if self.postgres else "")

    async def __aenter__(self) -> Stack:
        try:
            await self.start()
        except BaseException:
            await self.close()  # nothing half-started is left behind
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        # the runtime's parts are imported only when this stack runs them: a stack that only submits and
        # follows (`noetl run` against `noetl dev up`) loads the store, the bus and the executions service
        home = self.config.home
        home.mkdir(parents=True, exist_ok=True)
        if self.config.nats_url is None or self.config.pg_dsn is None:
            from engine.runtime.embedded import start_nats, start_postgres
        if self.config.nats_url is None:
            self.nats = await asyncio.to_thread(start_nats, home)
        if self.config.pg_dsn is None:
            self.postgres = await asyncio.to_thread(start_postgres, home)
        self.key = load_secret_key(home, self.config.secret_key)
        self.store = await open_store(self.pg_dsn, self.key)
        self.bus = await Bus.connect(self.nats_url, self.config.prefix)
        await self.bus.ensure_streams(replicas=self.config.nats_replicas)
        object_reader.configure(self.nats_url)  # large results kept in NATS are read back through it
        self.executions = ExecutionService(self.store, self.bus, resolve_ref=resolve_ref)
        if otlp_endpoint(self.config.otel) is not None and (self.config.orchestrator or self.config.workers):
            from engine.runtime.tracing import exporter_from_env  # opentelemetry: only when tracing

            self.tracer = exporter_from_env(self.config.otel)
        ready: list[asyncio.Event] = []
        if self.config.orchestrator:
            from control_plane.store.partitions import PartitionLeaseStore

            self.leases = PartitionLeaseStore(self.pg_dsn)
            self.orchestrator = self._orchestrator(self.leases)
            ready.append(self._spawn(self.orchestrator.run))
        if self.config.worker_processes:
            for pool, concurrency in self.config.workers.items():
                await self._start_worker_process(pool, concurrency)
        self._supervise()
        workers = {} if self.config.worker_processes else self.config.workers
        if workers:
            from engine.runtime.keychain import KeychainResolver
            from engine.runtime.step_runner import StepRunner, WorkerIdentity
            from engine.runtime.worker import Worker
            from engine.tools.registry import ToolRegistry
        for pool, concurrency in workers.items():
            # an interpreter for every step the worker runs at once; a few warm, the rest on demand
            registry = ToolRegistry(python_pool_size=max(1, concurrency), python_warm=PYTHON_WARM,
                                    nats_url=self.nats_url)
            await registry.start()
            self._registries.append(registry)
            keychain = KeychainResolver(self.store.credentials, google_token_url=self.config.google_token_url)
            if self.result_objects is None:
                self.result_objects = ResultObjects(self.nats_url, self.config.prefix)
            runner = StepRunner(registry, credentials=self.store.credentials, resolve_ref=resolve_ref,
                                identity=WorkerIdentity(pool=pool), work_dir=home / "work", keychain=keychain,
                                objects=self.result_objects, tracer=self.tracer)
            worker = Worker(self.bus, runner, pool=pool, concurrency=concurrency,
                            labels=self._labels(pool), capacity=self._capacity(pool),
                            ack_wait_s=self.config.ack_wait_s)
            ready.append(self._spawn(worker.run))
        for event in ready:
            await asyncio.wait_for(event.wait(), timeout=30)
        freeze_startup_heap()

    def _supervise(self) -> None:
        """Restart what this stack started or reuses when it dies: its embedded servers and its worker
        processes (control_plane.supervisor)."""
        from control_plane.supervisor import ServerSupervisor
        from engine.runtime.embedded import start_nats, start_postgres

        home = self.config.home
        supervisor = ServerSupervisor(on_restart=self._restarted)
        if self.nats is not None:
            supervisor.watch_blocking("nats", self.nats, lambda old: start_nats(home, port=old.port))
        if self.postgres is not None:
            supervisor.watch_blocking("postgres", self.postgres, lambda _old: start_postgres(home))
        for pool, process in self._worker_processes.items():
            concurrency = self.config.workers[pool]

            async def again(_old: Any, pool: str = pool, concurrency: int = concurrency) -> Any:
                return await self._start_worker_process(pool, concurrency)
            supervisor.watch(f"worker:{pool}", process, again)
        if supervisor.states():
            self.supervisor = supervisor
            self._spawn(supervisor.run)

    def _restarted(self, name: str, server: Any) -> None:
        if name == "nats":
            self.nats = server
        elif name == "postgres":
            self.postgres = server

    @property
    def nats_failovers(self) -> list[Failover]:
        """Each time the bus's connection came back after a loss; `moved`: onto another server of the
        cluster (engine.bus.jetstream.Failover)."""
        return list(self.bus.failovers) if self.bus is not None else []

    def components(self) -> list[dict[str, Any]]:
        """Each part of this stack with its pid and state (`noetl dev status`)."""
        found = self.supervisor.states() if self.supervisor is not None else []
        if self.orchestrator is not None:
            owned = len(self.orchestrator.partitions)
            found.append({"name": "orchestrator", "pid": os.getpid(), "status": "up" if owned else "standby",
                          "restarts": 0, "detail": f"{owned} of {PARTITIONS} partitions"})
        return found

    @property
    def pool_names(self) -> tuple[str, ...]:
        """The pools a step may be routed to: the pools file's and those this process serves."""
        declared = self.config.pools.names if self.config.pools is not None else ()
        return tuple(dict.fromkeys([*declared, *self.config.workers]))

    def _labels(self, pool: str) -> tuple[str, ...]:
        declared = self.config.pools.get(pool) if self.config.pools is not None else None
        return tuple(sorted(set(self.config.worker_labels) | set(declared.labels if declared else ())))

    def _capacity(self, pool: str) -> dict[str, float] | None:
        """What a worker of `pool` started here adds: given, else the pools file's, else cpu slots."""
        if self.config.worker_capacity is not None:
            return dict(self.config.worker_capacity)
        declared = self.config.pools.get(pool) if self.config.pools is not None else None
        return {r: float(u) for r, u in declared.capacity.items()} if declared is not None else None

    async def _start_worker_process(self, pool: str, concurrency: int, timeout_s: float = 60.0) -> _Process:
        ready = self.config.home / f"worker-{pool}-{os.getpid()}.ready"
        ready.unlink(missing_ok=True)
        # the worker traces as this stack says (config.otel), not as this process's OTEL_* variables do
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
        env = {**inherited, "NOETL_HOME": str(self.config.home), "NOETL_NATS_URL": self.nats_url,
               "NOETL_PG_DSN": self.pg_dsn, "NOETL_BUS_PREFIX": self.config.prefix,
               "NOETL_ACK_WAIT_S": str(self.config.ack_wait_s), "NOETL_READY_FILE": str(ready),
               "NOETL_PARENT_PID": str(os.getpid()),  # the worker exits by itself if this process dies
               **self.config.otel}
        if self.config.secret_key:
            env["NOETL_SECRET_KEY"] = self.config.secret_key
        if self.config.nats_replicas is not None:  # else the worker's bus could choose other replicas
            env["NOETL_NATS_REPLICAS"] = str(self.config.nats_replicas)
        if self.config.google_token_url:
            env["NOETL_GOOGLE_TOKEN_URL"] = self.config.google_token_url
        if self.config.pools is not None:
            env["NOETL_POOLS"] = json.dumps(self.config.pools.as_json())
        env["NOETL_WORKER_LABELS"] = ",".join(self.config.worker_labels)
        if self.config.worker_capacity is not None:
            env["NOETL_WORKER_CAPACITY"] = json.dumps(self.config.worker_capacity)
        with open(self.config.home / f"worker-{pool}.log", "ab") as log_file:  # the process has its own copy
            process = subprocess.Popen([sys.executable, "-m", "control_plane.worker_process", pool,
                                        str(concurrency)], env=env, stdout=log_file, stderr=subprocess.STDOUT)
        self._processes.append(process)
        self._worker_processes[pool] = _Process(process)
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            if process.poll() is not None:
                raise ControlPlaneError(f"the worker process of pool '{pool}' exited with "
                                        f"{process.returncode}", where=str(log_file.name),
                                        fix="read its log")
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"the worker process of pool '{pool}' was not ready within "
                                        f"{timeout_s} s", where=str(log_file.name), fix="read its log")
            await asyncio.sleep(0.05)
        ready.unlink(missing_ok=True)
        return self._worker_processes[pool]

    def _orchestrator(self, leases: PartitionLeaseStore) -> Orchestrator:
        from engine.runtime.orchestrator import Orchestrator

        assert self.bus is not None and self.store is not None
        return Orchestrator(self.bus, self.store.events, resolve_ref=resolve_ref, children=self.executions,
                            work_dir=self.config.home / "work", ack_wait_s=self.config.ack_wait_s,
                            pools=self.config.pools, leases=leases, tracer=self.tracer)

    def _spawn(self, run: Any) -> asyncio.Event:
        ready = asyncio.Event()

        async def guarded() -> None:
            try:
                await run(self._stop, ready)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("a runtime component stopped with an error")
                ready.set()

        self._tasks.append(asyncio.create_task(guarded()))
        return ready

    async def close(self) -> None:
        self._stop.set()
        for process in self._processes:  # workers drain their running steps, then exit
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                await asyncio.to_thread(process.wait, 20)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=5)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)
        if self.leases is not None:  # the orchestrator left already, unless it was stopped by force
            with contextlib.suppress(Exception):
                await self.leases.leave()
        for registry in self._registries:
            with contextlib.suppress(Exception):
                await registry.close()
        if self.result_objects is not None:
            with contextlib.suppress(Exception):
                await self.result_objects.close()
        if self.tracer is not None:  # the spans still queued go out
            await asyncio.to_thread(self.tracer.close)
        if self.bus is not None:
            with contextlib.suppress(Exception):
                await self.bus.close()
        if self.store is not None:
            await self.store.close()
