"""First stage of reading a playbook: YAML text -> plain data plus the line/column of every node.

The YAML 1.2 core schema is used for plain scalars, so `on`, `off`, `yes`, `no` stay strings and dates
stay strings; only `true/false`, `null`, numbers are typed. Duplicate keys are reported, not dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.dsl.diagnostics import Issue, Path

MAX_NODES = 1_000_000  # bounds alias expansion ("billion laughs")

_CORE_RESOLVERS: list[tuple[str, re.Pattern[str], str]] = [
    ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    ("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
     "-+0123456789"),
    ("tag:yaml.org,2002:float",
     re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
     "-+0123456789."),
    ("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), "~nN\0"),
]


class _CoreResolver(yaml.resolver.BaseResolver):
    yaml_implicit_resolvers: dict[Any, Any] = {}


for _tag, _regexp, _first in _CORE_RESOLVERS:
    _CoreResolver.add_implicit_resolver(_tag, _regexp, list(_first))
_CoreResolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^$"), [""])

if yaml.__with_libyaml__:
    class _Composer(yaml.cyaml.CParser, _CoreResolver):
        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            _CoreResolver.__init__(self)
else:  # pragma: no cover - libyaml ships with PyYAML wheels
    class _Composer(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser,  # type: ignore[no-redef]
                    yaml.composer.Composer, _CoreResolver):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _CoreResolver.__init__(self)


Mark = tuple[int, int]  # 1-based line, column


@dataclass
class SourceDoc:
    """The data of one YAML document with where each value (and each mapping key) starts."""

    data: Any
    value_marks: dict[Path, Mark] = field(default_factory=dict)
    key_marks: dict[Path, Mark] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    def mark_of(self, path: Path, *, on_key: bool = False) -> Mark:
        """The closest known position for `path`: its key or value, else its nearest ancestor."""
        if on_key and path in self.key_marks:
            return self.key_marks[path]
        probe = path
        while True:
            if probe in self.value_marks:
                return self.value_marks[probe]
            if probe in self.key_marks:
                return self.key_marks[probe]
            if not probe:
                return (1, 1)
            probe = probe[:-1]


class YamlSyntaxError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def _mark(node: Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, doc: SourceDoc) -> None:
        self.doc = doc
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlSyntaxError(
                f"document expands to more than {MAX_NODES} nodes (aliases?); "
                "simplify the anchors and aliases", *_mark(node))
        self.doc.value_marks.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if id(node) in self.active:
            raise YamlSyntaxError("recursive alias: a node contains itself; remove the self-reference",
                                  *_mark(node))
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                self._check_tag(node, "tag:yaml.org,2002:seq", path)
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                self._check_tag(node, "tag:yaml.org,2002:map", path)
                return self._mapping(node, path)
        finally:
            self.active.discard(id(node))
        raise YamlSyntaxError(f"unsupported YAML node {type(node).__name__}", *_mark(node))

    def _check_tag(self, node: Node, expected: str, path: Path) -> None:
        if node.tag not in (expected, None):
            self.doc.issues.append(Issue(path, f"unsupported YAML tag '{node.tag}'; remove it",
                                         "yaml_tag"))

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "<<" \
                    and not key_node.style:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self.doc.issues.append(Issue(path, "a mapping key must be a plain value, not a "
                                                   "list or mapping", "yaml_key"))
                continue
            key = str(key_node.value)
            child = path + (key,)
            if key in out:
                first = self.doc.key_marks.get(child, (0, 0))
                self.doc.issues.append(Issue(
                    child, f"duplicate key '{key}' (first defined at line {first[0]}); "
                           "YAML keeps only one of them, so remove or rename the other",
                    "duplicate_key", on_key=True))
                self.doc.key_marks[child] = _mark(key_node)
                continue
            self.doc.key_marks[child] = _mark(key_node)
            out[key] = self.build(value_node, child)
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.doc.issues.append(Issue(path, "'<<' merges only mappings", "yaml_merge"))
                    continue
                merged = self._mapping(source, path)
                for key, value in merged.items():
                    out.setdefault(key, value)
        return out

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        tag, value = node.tag, node.value
        if tag == "tag:yaml.org,2002:str" or tag == "!":
            return value
        if tag == "tag:yaml.org,2002:null":
            return None
        if tag == "tag:yaml.org,2002:bool":
            return value.lower() == "true"
        if tag == "tag:yaml.org,2002:int":
            try:
                if value.startswith("0o"):
                    return int(value[2:], 8)
                return int(value, 0) if value.startswith("0x") else int(value)
            except ValueError:
                self.doc.issues.append(Issue(path, f"'{value}' is not an integer", "yaml_tag"))
                return value
        if tag == "tag:yaml.org,2002:float":
            low = value.lower()
            if low.endswith("inf"):
                return float("-inf") if low.startswith("-") else float("inf")
            if low == ".nan":
                return float("nan")
            try:
                return float(value)
            except ValueError:
                self.doc.issues.append(Issue(path, f"'{value}' is not a number", "yaml_tag"))
                return value
        self.doc.issues.append(Issue(path, f"unsupported YAML tag '{tag}'; remove it", "yaml_tag"))
        return value


def load_yaml(text: str) -> SourceDoc:
    """Parse one YAML document. Raises YamlSyntaxError (with 1-based line/column) on bad syntax."""
    composer = _Composer(text)
    try:
        node = composer.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            problem = f"{problem} ({exc.context})"
        raise YamlSyntaxError(f"YAML syntax error: {problem}", line, column) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"YAML syntax error: {exc}", 1, 1) from None
    finally:
        dispose = getattr(composer, "dispose", None)
        if dispose:
            dispose()
    doc = SourceDoc(data=None)
    if node is None:
        return doc
    doc.data = _Builder(doc).build(node, ())
    return doc
