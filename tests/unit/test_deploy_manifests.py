"""The Kubernetes manifests in deploy/ (docs/deploy.md), checked offline: each overlay rendered with
kustomize's semantics (tests/harness/kustomize.py), validated against the Kubernetes API's JSON schemas
(kubernetes-validate) and checkov's rules, and held to what NoETL needs of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.plan.pools import parse_capacity_overrides, parse_pools
from tests.conftest import REPO
from tests.harness.kustomize import (
    KustomizeError,
    Manifest,
    apply_json_patch_operation,
    pod_spec,
    render,
    split_image,
)

DEPLOY = REPO / "deploy"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
OLDEST_KUBERNETES = (1, 31)  # the schemas must be at least this recent
# the only checkov rules a manifest may skip (with its reason in a checkov.io/skip annotation)
ALLOWED_SKIPS = {"CKV_K8S_35", "CKV_K8S_43"}
RECOMMENDED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of")
WORKLOADS = ("Deployment", "StatefulSet")
INSTALL = 'pip install -c constraints.txt -e ".[dev]"'
CHECKOV_PIN = "checkov==3.3.30"  # the version these manifests were checked with (also in .ci/run)
CHECKOV_VENV = ".ci/.venv-checkov"


def objects_of(overlay: str) -> list[Manifest]:
    return render(DEPLOY / "overlays" / overlay)


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{len(hits)} {kind} named {name}"
    return hits[0]


def workloads(objects: list[Manifest]) -> Iterator[Manifest]:
    return (o for o in objects if o["kind"] in WORKLOADS)


def spec_of(obj: Manifest) -> dict[str, Any]:
    spec = pod_spec(obj)
    assert spec is not None, f"{obj['kind']} {obj['metadata']['name']} has no pod template"
    return spec


def containers(obj: Manifest) -> list[dict[str, Any]]:
    spec = spec_of(obj)
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def settings(objects: list[Manifest]) -> dict[str, str]:
    return find(objects, "ConfigMap", "noetl-settings")["data"]


def arg_after(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def cpu_units(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_overlays_are_dev_and_production() -> None:
    assert {"dev", "production"} <= set(OVERLAYS)


def test_the_renderer_agrees_with_kubectl_kustomize_where_kubectl_is_installed(overlay: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl on PATH: the renderer is not compared with `kubectl kustomize` here")
    run = subprocess.run([kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr

    def by_name(objects: list[Manifest]) -> dict[tuple[str, str], Manifest]:
        return {(o["kind"], o["metadata"]["name"]): o for o in objects}

    assert by_name(objects_of(overlay)) == by_name([d for d in yaml.safe_load_all(run.stdout) if d])


def test_every_rendered_object_is_valid_against_the_kubernetes_schemas(overlay: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason=f"not installed: {INSTALL}")
    version = kubernetes_validate.latest_version()
    assert tuple(int(x) for x in version.split(".")[:2]) >= OLDEST_KUBERNETES
    problems = []
    for obj in objects_of(overlay):
        try:
            kubernetes_validate.validate(obj, version, strict=True)  # strict: no unknown fields either
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, exc.path))}: "
                            f"{exc.message}")
    assert problems == [], f"not valid for Kubernetes {version}"


def test_the_example_secrets_are_valid_kubernetes_objects_holding_only_placeholders() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason=f"not installed: {INSTALL}")
    secrets = list(yaml.safe_load_all((DEPLOY / "base" / "secrets.example.yaml").read_text()))
    for secret in secrets:
        kubernetes_validate.validate(secret, kubernetes_validate.latest_version(), strict=True)
        assert "data" not in secret  # base64 would hide what the value is
        assert all(value.startswith("REPLACE_ME") for value in secret["stringData"].values())
    # every secret a container reads is described there, under the same name and key
    described = {(s["metadata"]["name"], key) for s in secrets for key in s["stringData"]}
    for overlay_name in OVERLAYS:
        read = {(env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
                for obj in workloads(objects_of(overlay_name)) for c in containers(obj)
                for env in c.get("env", []) if "secretKeyRef" in env.get("valueFrom", {})}
        assert read == {("noetl-postgres", "NOETL_PG_DSN"), ("noetl-secret-key", "NOETL_SECRET_KEY")}
        assert read <= described


def test_no_overlay_applies_a_secret(overlay: str) -> None:
    # `kubectl apply -k` must never overwrite the Secrets the operator created with placeholders
    assert [o for o in objects_of(overlay) if o["kind"] == "Secret"] == []
    base = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert "secrets.example.yaml" not in base["resources"]


def checkov() -> str | None:
    """The checkov command: NOETL_CHECKOV (what .ci/run sets: a virtual environment of its own, since checkov
    pins packaging and networkx below what NoETL's tools use), else one on the PATH."""
    return os.environ.get("NOETL_CHECKOV") or shutil.which("checkov")


def test_checkov_finds_no_failed_check_and_skips_only_with_a_reason(overlay: str, tmp_path: Path) -> None:
    command = checkov()
    if command is None:
        pytest.skip(f"checkov is not installed: `python -m venv {CHECKOV_VENV} && {CHECKOV_VENV}/bin/pip "
                    f"install {CHECKOV_PIN}` and set NOETL_CHECKOV={CHECKOV_VENV}/bin/checkov (.ci/run does)")
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(yaml.safe_dump_all(objects_of(overlay), sort_keys=False))
    run = subprocess.run([command, "--file", str(manifest), "--framework", "kubernetes", "--skip-download",
                          "--output", "json"], capture_output=True, text=True, timeout=240, cwd=tmp_path)
    report = json.loads(run.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["check_type"] == "kubernetes"
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["parsing_errors"] == 0
    passed = {c["check_id"] for c in results["passed_checks"]}
    # the rules this deployment is here to meet actually ran, and passed
    assert {"CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_11", "CKV_K8S_13", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23",
            "CKV_K8S_28", "CKV_K8S_31", "CKV_K8S_37", "CKV_K8S_38", "CKV_K8S_40", "CKV2_K8S_6"} <= passed
    for skipped in results["skipped_checks"]:
        assert skipped["check_id"] in ALLOWED_SKIPS, skipped["check_id"]
        assert len(skipped["check_result"].get("suppress_comment") or "") > 20, "a skip says why"


def test_the_server_runs_two_or_more_replicas_behind_a_service_and_a_disruption_budget(overlay: str) -> None:
    objects = objects_of(overlay)
    server = find(objects, "Deployment", "noetl-server")
    assert server["spec"]["replicas"] >= 2
    (container,) = spec_of(server)["containers"]
    assert [*container["command"], *container["args"]][:3] == ["noetl", "server", "start"]
    assert arg_after(container["args"], "--host") == "0.0.0.0"
    port = int(arg_after(container["args"], "--port") or 0)
    assert port > 0 and {"name": "http", "containerPort": port, "protocol": "TCP"} in container["ports"]
    labels = server["spec"]["template"]["metadata"]["labels"]
    service = find(objects, "Service", "noetl-server")
    assert selects(service["spec"]["selector"], labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    policy = find(objects, "NetworkPolicy", "noetl-server")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], labels)
    allowed = [p for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert {"port": port, "protocol": "TCP"} in allowed
    budget = find(objects, "PodDisruptionBudget", "noetl-server")
    assert selects(budget["spec"]["selector"]["matchLabels"], labels)
    assert 1 <= budget["spec"]["minAvailable"] < server["spec"]["replicas"]


def test_the_server_is_probed_on_health_and_scraped_on_metrics_where_the_api_has_them(overlay: str) -> None:
    from control_plane.api import health, metrics

    routes = {route.path for router in (health.router, metrics.router) for route in router.routes}  # type: ignore[attr-defined]
    assert {"/health", "/metrics"} <= routes
    server = find(objects_of(overlay), "Deployment", "noetl-server")
    (container,) = spec_of(server)["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    # /health answers 503 during a Postgres or NATS outage: liveness waits it out longer than readiness
    def patience(probe: dict[str, int]) -> int:
        return probe["periodSeconds"] * probe["failureThreshold"]

    assert patience(container["livenessProbe"]) > patience(container["readinessProbe"])
    annotations = server["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]


def test_every_workload_is_probed_for_readiness_and_liveness(overlay: str) -> None:
    objects = objects_of(overlay)
    script = settings(objects)["nats-connected.py"]
    for obj in workloads(objects):
        for container in spec_of(obj)["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{obj['metadata']['name']}: no {probe}"
            if obj["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "worker":
                # a worker serves no HTTP: the probe script of the ConfigMap, mounted where it is run
                command = container["livenessProbe"]["exec"]["command"]
                assert command == container["readinessProbe"]["exec"]["command"]
                mount = next(m for m in container["volumeMounts"]
                             if command[1].startswith(m["mountPath"] + "/"))
                volume = next(v for v in spec_of(obj)["volumes"] if v["name"] == mount["name"])
                assert volume["configMap"]["name"] == "noetl-settings"
                item = next(i for i in volume["configMap"]["items"] if i["path"] == Path(command[1]).name)
                assert settings(objects)[item["key"]] == script


def test_the_worker_probe_passes_only_while_a_connection_to_the_nats_port_is_open(tmp_path: Path) -> None:
    script = tmp_path / "nats-connected.py"
    script.write_text(settings(objects_of("dev"))["nats-connected.py"])
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        env = {"NOETL_NATS_URL": f"nats://127.0.0.1:{port}", "PATH": "/usr/bin:/bin"}

        def probe() -> int:
            return subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                                  timeout=30).returncode

        assert probe() == 1  # listening is not connected
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert probe() == 0
            client.close()
        assert probe() == 1


def test_every_pod_runs_as_non_root_without_privileges_on_a_read_only_root(overlay: str) -> None:
    for obj in workloads(objects_of(overlay)):
        name, spec = obj["metadata"]["name"], spec_of(obj)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in obj["spec"].get("volumeClaimTemplates", [])}
        for container in containers(obj):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context.get("runAsUser", 0) >= 10000, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context.get("privileged", False) is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
            # what it writes is a scratch emptyDir or its persistent volume; everything else read-only
            for mount in container.get("volumeMounts", []):
                volume = volumes.get(mount["name"], {})
                writable = "emptyDir" in volume or mount["name"] in claims
                assert writable or mount.get("readOnly") is True, f"{name}: {mount['mountPath']}"


def noetl_home_of(container: dict[str, Any], objects: list[Manifest]) -> str:
    """NOETL_HOME as the process sees it: the container's own `env` wins over the ConfigMap's."""
    env = {e["name"]: e for e in container.get("env", [])}
    home = env["NOETL_HOME"]["value"] if "NOETL_HOME" in env else settings(objects)["NOETL_HOME"]
    return re.sub(r"\$\((\w+)\)", lambda m: "{" + m.group(1) + "}", str(home))


def test_noetl_home_and_tmp_are_scratch_volumes_in_every_noetl_pod(overlay: str) -> None:
    objects = objects_of(overlay)
    for obj in workloads(objects):
        if obj["metadata"]["labels"]["app.kubernetes.io/name"] != "noetl":
            continue
        volumes = {v["name"]: v for v in spec_of(obj)["volumes"]}
        for container in containers(obj):
            mounted = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            home = noetl_home_of(container, objects)
            under = [path for path in mounted if home == path or home.startswith(path + "/")]
            assert len(under) == 1 and "emptyDir" in mounted[under[0]], f"{obj['metadata']['name']}: {home}"
            assert "sizeLimit" in mounted[under[0]]["emptyDir"]
            assert "emptyDir" in mounted["/tmp"], obj["metadata"]["name"]


def test_each_server_replica_keeps_its_own_embedded_index_unless_qdrant_is_shared(overlay: str) -> None:
    # the indexer's cursor in Postgres is named after the index's path (agents/embeddings/runtime.py):
    # replicas sharing one path would split the ended executions between their embedded indexes
    objects = objects_of(overlay)
    assert "NOETL_QDRANT_URL" not in settings(objects)
    (container,) = spec_of(find(objects, "Deployment", "noetl-server"))["containers"]
    assert "{POD_NAME}" in noetl_home_of(container, objects)
    env = [e["name"] for e in container["env"]]
    assert env.index("POD_NAME") < env.index("NOETL_HOME")  # $(POD_NAME) expands only if defined before
    pod_name = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert pod_name in container["env"]


def test_every_container_requests_and_limits_cpu_and_memory(overlay: str) -> None:
    for obj in workloads(objects_of(overlay)):
        for container in containers(obj):
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{obj['metadata']['name']}: {kind}"
            assert cpu_units(resources["requests"]["cpu"]) <= cpu_units(resources["limits"]["cpu"])


def test_every_workload_has_exactly_one_disruption_budget(overlay: str) -> None:
    objects = objects_of(overlay)
    budgets = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for obj in workloads(objects):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if selects(b["spec"]["selector"]["matchLabels"], labels)]
        assert len(mine) == 1, f"{obj['metadata']['name']}: {len(mine)} disruption budgets"
        assert selects(obj["spec"]["selector"]["matchLabels"], labels)


def test_every_noetl_pod_is_covered_by_a_network_policy(overlay: str) -> None:
    objects = objects_of(overlay)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for obj in workloads(objects):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert any(selects(p["spec"]["podSelector"]["matchLabels"], labels) for p in policies), \
            obj["metadata"]["name"]


def test_worker_pools_match_the_pools_file_and_their_hardware(overlay: str) -> None:
    objects = objects_of(overlay)
    pools = parse_pools(settings(objects)["pools.yaml"], "noetl-settings pools.yaml")
    served = {}
    for obj in workloads(objects):
        if obj["metadata"]["labels"].get("app.kubernetes.io/component") != "worker":
            continue
        (container,) = spec_of(obj)["containers"]
        args = container["args"]
        assert args[:2] == ["worker", "start"]
        pool = pools.get(str(arg_after(args, "--pool")))
        assert pool is not None, f"{obj['metadata']['name']}: pool not declared in pools.yaml"
        served[pool.name] = obj
        assert obj["metadata"]["labels"]["noetl.io/pool"] == pool.name
        # what the worker tells the orchestrator it has is what Kubernetes gives it
        given = arg_after(args, "--capacity")
        capacity = dict(parse_capacity_overrides(given)) if given else dict(pool.capacity)
        if given:
            assert capacity == dict(pool.capacity), f"--capacity and pools.yaml differ for {pool.name}"
        limits = container["resources"]["limits"]
        assert capacity.get("cpu", 0) <= cpu_units(limits["cpu"])
        assert capacity.get("gpu", 0) == int(limits.get("nvidia.com/gpu", 0))
        assert int(str(arg_after(args, "--concurrency"))) <= capacity["cpu"]
        labels = set(filter(None, str(arg_after(args, "--labels") or "").split(",")))
        assert labels <= set(pool.labels)
    assert {"default", "gpu"} <= set(served)
    gpu = spec_of(served["gpu"])
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu["tolerations"]
    assert arg_after(gpu["containers"][0]["args"], "--labels") == "gpu"
    assert "nodeSelector" not in (pod_spec(served["default"]) or {})


def test_nats_is_a_three_node_jetstream_cluster_with_a_route_to_each_pod(overlay: str) -> None:
    objects = objects_of(overlay)
    nats = find(objects, "StatefulSet", "noetl-nats")
    replicas, headless_name = nats["spec"]["replicas"], nats["spec"]["serviceName"]
    assert replicas == 3
    headless = find(objects, "Service", headless_name)
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    labels = nats["spec"]["template"]["metadata"]["labels"]
    assert selects(headless["spec"]["selector"], labels)
    conf = find(objects, "ConfigMap", "noetl-nats")["data"]["nats.conf"]
    routes = re.findall(r"nats://[\w.-]+:\d+", conf.split("routes:", 1)[1])
    assert routes == [f"nats://{nats['metadata']['name']}-{i}.{headless_name}:6222" for i in range(replicas)]
    jetstream = re.search(r"jetstream\s*\{(.*?)\}", conf, re.S)
    assert jetstream is not None
    store_dir = re.search(r"store_dir:\s*(\S+)", jetstream.group(1))
    assert store_dir is not None and re.search(r"sync_interval:\s*\S+", jetstream.group(1))
    (container,) = spec_of(nats)["containers"]
    data_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == store_dir.group(1))
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == data_mount["name"]  # JetStream's files on a persistent volume
    assert "server_name: $SERVER_NAME" in conf
    pod_name = {"name": "SERVER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert pod_name in container["env"]
    # the bus NoETL connects to is this cluster
    url = settings(objects)["NOETL_NATS_URL"]
    host, port = re.fullmatch(r"nats://([\w-]+):(\d+)", url).groups()  # type: ignore[union-attr]
    client = find(objects, "Service", host)
    assert selects(client["spec"]["selector"], labels) and client["spec"]["ports"][0]["port"] == int(port)
    budget = find(objects, "PodDisruptionBudget", "noetl-nats")
    assert budget["spec"]["maxUnavailable"] == 1  # 2 of 3 keep the quorum


def test_images_are_pinned_by_the_overlay_never_latest(overlay: str) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for obj in workloads(objects_of(overlay)):
        for container in containers(obj):
            name, tag, digest = split_image(container["image"])
            assert tag not in (None, "latest", "set-by-overlay") or digest, container["image"]
            if name == "ghcr.io/noetl/noetl":
                assert tag == version
    base = render(DEPLOY / "base")
    assert {split_image(c["image"])[1] for o in workloads(base) for c in containers(o)} == {"set-by-overlay"}


def test_every_object_carries_the_recommended_labels_and_its_overlay_namespace(overlay: str) -> None:
    objects = objects_of(overlay)
    (namespace,) = [o for o in objects if o["kind"] == "Namespace"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], where
            for label in RECOMMENDED_LABELS:
                assert label in obj["metadata"]["labels"], f"{where}: no {label}"
        if obj["kind"] in WORKLOADS:
            pod_labels = obj["spec"]["template"]["metadata"]["labels"]
            assert "app.kubernetes.io/component" in pod_labels, where
            assert all(label in pod_labels for label in RECOMMENDED_LABELS), where


def test_the_service_account_mounts_no_token(overlay: str) -> None:
    objects = objects_of(overlay)
    account = find(objects, "ServiceAccount", "noetl")
    assert account["automountServiceAccountToken"] is False
    assert {spec_of(o)["serviceAccountName"] for o in workloads(objects)} == {"noetl"}


def test_every_noetl_setting_in_the_configmap_is_one_noetl_reads() -> None:
    sources = "".join(path.read_text() for package in ("noetl", "control_plane", "engine", "agents")
                      for path in (REPO / package).rglob("*.py"))
    keys = [k for k in settings(objects_of("dev")) if k.startswith("NOETL_")]
    assert "NOETL_NATS_URL" in keys and "NOETL_POOLS" in keys
    assert [k for k in keys if f'"{k}"' not in sources] == []


def test_the_renderer_applies_json6902_patches_and_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    document = {"spec": {"replicas": 1, "items": ["a", "c"]}}
    replace = {"op": "replace", "path": "/spec/replicas", "value": 3}
    document = apply_json_patch_operation(document, replace, "t")
    document = apply_json_patch_operation(document, {"op": "add", "path": "/spec/items/1", "value": "b"}, "t")
    document = apply_json_patch_operation(document, {"op": "add", "path": "/spec/items/-", "value": "d"}, "t")
    document = apply_json_patch_operation(document, {"op": "remove", "path": "/spec/items/0"}, "t")
    assert document == {"spec": {"replicas": 3, "items": ["b", "c", "d"]}}
    with pytest.raises(KustomizeError, match="no key 'replica'"):
        apply_json_patch_operation(document, {"op": "replace", "path": "/spec/replica", "value": 2}, "t")
    with pytest.raises(KustomizeError, match="not supported"):
        apply_json_patch_operation(document, {"op": "move", "from": "/spec", "path": "/x"}, "t")
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    (tmp_path / "kustomization.yaml").write_text("resources: [cm.yaml]\ncommonLabels: {a: b}\n")
    with pytest.raises(KustomizeError, match="commonLabels not supported"):
        render(tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [cm.yaml]\npatches:\n  - target: {kind: ConfigMap, name: y}\n"
        "    patch: '[{op: add, path: /data, value: {}}]'\n")
    with pytest.raises(KustomizeError, match="matches no object"):
        render(tmp_path)
    assert split_image("registry:5000/a/b:1.2@sha256:ff") == ("registry:5000/a/b", "1.2", "sha256:ff")
    assert split_image("registry:5000/a/b") == ("registry:5000/a/b", None, None)
