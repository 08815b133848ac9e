"""Render a kustomization (deploy/overlays/*) the way `kubectl kustomize` does, without its binary.

Only the subset of kustomize that deploy/ uses, and anything else is refused rather than ignored:

- `resources`: YAML files (several documents each) and directories holding a kustomization.yaml,
  rendered recursively, in order;
- `patches` with an inline JSON6902 patch (RFC 6902: `add`, `remove`, `replace`, `test`) and a
  `target` of `kind`, `name` (a regular expression matched in full, as kustomize does), `group`,
  `version`, `namespace`. A patch whose target matches no object is an error here (kustomize is silent:
  a typo would otherwise go unnoticed);
- `namespace`: set on every namespaced object (a Namespace object keeps its own name: name it as the
  overlay's namespace);
- `images`: `name` matched against each container's image name (the part before `:` / `@`), then
  `newName`, `newTag`, `digest` (a digest replaces the tag, as kustomize does).

Transformers run in kustomize's order: patches, then namespace, then images.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = "kustomization.yaml"
SUPPORTED_KEYS = frozenset({"apiVersion", "kind", "resources", "patches", "namespace", "images"})
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
                            "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass",
                            "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"})
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

Manifest = dict[str, Any]


class KustomizeError(Exception):
    """A kustomization this renderer cannot render: says which file and what."""


def render(directory: Path) -> list[Manifest]:
    """The objects `kubectl kustomize DIRECTORY` prints, in the same order of resources."""
    path = directory / KUSTOMIZATION
    if not path.is_file():
        raise KustomizeError(f"{directory}: no {KUSTOMIZATION}")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(spec) - SUPPORTED_KEYS)
    if unknown:
        raise KustomizeError(f"{path}: {', '.join(unknown)} not supported by this renderer "
                             f"(it knows {', '.join(sorted(SUPPORTED_KEYS))})")
    objects: list[Manifest] = []
    for resource in spec.get("resources", []):
        target = directory / resource
        if target.is_dir():
            objects.extend(render(target))
        elif target.is_file():
            objects.extend(doc for doc in yaml.safe_load_all(target.read_text()) if doc)
        else:
            raise KustomizeError(f"{path}: resource {resource!r} is neither a file nor a directory")
    for number, patch in enumerate(spec.get("patches", [])):
        _apply_patch(objects, patch, f"{path} patches[{number}]")
    if "namespace" in spec:
        for obj in objects:
            if obj.get("kind") not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for image in spec.get("images", []):
        _set_image(objects, image)
    return objects


def _matches(obj: Manifest, target: dict[str, str]) -> bool:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    checks = {"kind": obj.get("kind"), "name": obj.get("metadata", {}).get("name"), "group": group,
              "version": version, "namespace": obj.get("metadata", {}).get("namespace")}
    for key, wanted in target.items():
        if key not in checks:
            raise KustomizeError(f"patch target key {key!r} not supported (known: {', '.join(checks)})")
        if checks[key] is None or not re.fullmatch(str(wanted), str(checks[key])):
            return False
    return True


def _apply_patch(objects: list[Manifest], patch: dict[str, Any], where: str) -> None:
    if set(patch) != {"target", "patch"}:
        raise KustomizeError(f"{where}: only inline JSON6902 patches with a target are supported")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{where}: not a JSON6902 patch (a list of operations)")
    hits = [i for i, obj in enumerate(objects) if _matches(obj, patch["target"])]
    if not hits:
        raise KustomizeError(f"{where}: target {patch['target']} matches no object")
    for i in hits:
        patched = copy.deepcopy(objects[i])
        for operation in operations:
            patched = apply_json_patch_operation(patched, operation, where)
        objects[i] = patched


def _pointer(path: str, where: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"{where}: JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _step(node: Any, token: str, where: str) -> Any:
    if isinstance(node, list):
        if not token.isdigit() or int(token) >= len(node):
            raise KustomizeError(f"{where}: no index {token} in a list of {len(node)}")
        return node[int(token)]
    if isinstance(node, dict):
        if token not in node:
            raise KustomizeError(f"{where}: no key {token!r} (keys: {', '.join(map(str, node))})")
        return node[token]
    raise KustomizeError(f"{where}: cannot step into {type(node).__name__} with {token!r}")


def apply_json_patch_operation(document: Any, operation: dict[str, Any], where: str) -> Any:
    """One RFC 6902 operation (add, remove, replace, test) applied to `document`; the result."""
    op, tokens = operation.get("op"), _pointer(str(operation.get("path", "")), where)
    here = f"{where} {op} {operation.get('path')}"
    if op not in ("add", "remove", "replace", "test"):
        raise KustomizeError(f"{here}: operation not supported (add, remove, replace, test)")
    if tokens == [""]:
        raise KustomizeError(f"{here}: the whole document cannot be patched")
    parent = document
    for token in tokens[:-1]:
        parent = _step(parent, token, here)
    last = tokens[-1]
    if op == "test":
        if _step(parent, last, here) != operation["value"]:
            raise KustomizeError(f"{here}: test failed")
    elif op == "remove" or op == "replace":
        _step(parent, last, here)  # it must exist
        if op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(operation["value"])
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if not 0 <= index <= len(parent):
            raise KustomizeError(f"{here}: index {last} out of range")
        parent.insert(index, copy.deepcopy(operation["value"]))
    elif isinstance(parent, dict):
        parent[last] = copy.deepcopy(operation["value"])
    else:
        raise KustomizeError(f"{here}: cannot add into {type(parent).__name__}")
    return document


def pod_spec(obj: Manifest) -> dict[str, Any] | None:
    """The pod spec of a workload (Deployment, StatefulSet, ...), else None."""
    node: Any = obj
    for key in POD_TEMPLATE_PATHS.get(str(obj.get("kind")), ()):
        node = node.get(key, {}) if isinstance(node, dict) else {}
    return node if obj.get("kind") in POD_TEMPLATE_PATHS and isinstance(node, dict) else None


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`name[:tag][@digest]` -> (name, tag, digest); a registry's port is part of the name."""
    name, _, digest = image.partition("@")
    head, colon, tag = name.rpartition(":")
    if colon and "/" not in tag:
        return head, tag, digest or None
    return name, None, digest or None


def _set_image(objects: list[Manifest], image: dict[str, str]) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"images: {', '.join(sorted(unknown))} not supported")
    for obj in objects:
        spec = pod_spec(obj)
        for container in [*(spec or {}).get("initContainers", []), *(spec or {}).get("containers", [])]:
            name, tag, digest = split_image(str(container.get("image", "")))
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            tag = str(image["newTag"]) if "newTag" in image else tag
            digest = image.get("digest", digest)
            # as kustomize: a digest replaces the tag
            container["image"] = name + (f"@{digest}" if digest else f":{tag}" if tag else "")
