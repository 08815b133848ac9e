"""Fuzzing the playbook reader: mutate valid playbooks, check that nothing crashes and every error is located.

Run: `python -m evals.suites.dsl_fuzz --cases 10000` or `noetl eval dsl --cases 10000`; prints JSON.
The property-based tests drive the same mutators through Hypothesis.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.dsl.diagnostics import Diagnostic
from engine.net.validate import validate_text

REPO = Path(__file__).resolve().parents[2]
SEED_DIRS = (REPO / "examples", REPO / "tests" / "corpus" / "dsl" / "valid")
_WORDS = ["step", "tool", "kind", "next", "arcs", "when", "loop", "in", "iterator", "set", "ctx.x",
          "workflow", "python", "noop", "code", "spec", "mode", "parallel", "retry", "name", "on",
          "yes", "no", "null", "{{ x }}", "{{ broken", "{% if %}", "", " ", "\t", "é", "0x1f", "1e9"]
_YAML_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_JUNK = [":", "-", "{", "}", "[", "]", "\"", "'", "&a", "*a", "!!python/object", "#", "\t", "  ", "|",
         ">", "%", "@", "`", "\\", "\x00", "\u2028"]


def seed_texts() -> list[str]:
    texts = []
    for folder in SEED_DIRS:
        texts.extend(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.yaml")))
    if not texts:
        raise RuntimeError(f"no seed playbooks found under {', '.join(map(str, SEED_DIRS))}")
    return texts


def _containers(node: Any, out: list[Any]) -> list[Any]:
    if isinstance(node, (dict, list)):
        out.append(node)
        for child in (node.values() if isinstance(node, dict) else node):
            _containers(child, out)
    return out


def _random_value(rng: random.Random) -> Any:
    return rng.choice([
        rng.randint(-5, 10**6), rng.random(), rng.choice(_WORDS), None, True, False, [], {},
        [rng.choice(_WORDS)], {rng.choice(_WORDS): rng.choice(_WORDS)}, "x" * rng.randint(0, 300),
    ])


def _typo(word: str, rng: random.Random) -> str:
    if not word:
        return "x"
    i = rng.randrange(len(word))
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1:] or "x"
    if op == 1:
        return word[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz_") + word[i:]
    return word[:i] + word[i:][::-1]


def mutate_data(data: Any, rng: random.Random) -> Any:
    containers = _containers(data, [])
    if not containers:
        return _random_value(rng)
    node = rng.choice(containers)
    op = rng.randrange(6)
    if isinstance(node, dict) and node:
        key = rng.choice(list(node))
        if op == 0:
            del node[key]
        elif op == 1:
            node[_typo(str(key), rng)] = node.pop(key)
        elif op == 2:
            node[key] = _random_value(rng)
        elif op == 3:
            node[rng.choice(_WORDS)] = _random_value(rng)
        elif op == 4 and isinstance(node[key], str):
            node[key] = _typo(node[key], rng)
        else:
            node[key] = rng.choice(containers) if rng.random() < 0.3 else _random_value(rng)
    elif isinstance(node, list) and node:
        i = rng.randrange(len(node))
        if op in (0, 1):
            del node[i]
        elif op == 2:
            node.insert(i, node[i] if not isinstance(node[i], (dict, list)) else _random_value(rng))
        else:
            node[i] = _random_value(rng)
    elif isinstance(node, dict):
        node[rng.choice(_WORDS)] = _random_value(rng)
    else:
        node.append(_random_value(rng))
    return data


def mutate_text(text: str, rng: random.Random) -> str:
    lines = text.split("\n")
    i = rng.randrange(len(lines))
    op = rng.randrange(5)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        pos = rng.randrange(len(lines[i]) + 1)
        lines[i] = lines[i][:pos] + rng.choice(_JUNK) + lines[i][pos:]
    elif op == 3:
        lines[i] = " " * rng.randrange(0, 8) + lines[i].lstrip()
    else:
        lines[i] = _typo(lines[i], rng)
    return "\n".join(lines)


def mutate(text: str, rng: random.Random) -> str:
    """One to three mutations, on the data (dumped back to YAML) or on the text itself."""
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                data = None
            if data is not None:
                try:
                    text = yaml.safe_dump(mutate_data(data, rng), sort_keys=False, allow_unicode=True)
                    continue
                except (yaml.YAMLError, RecursionError, ValueError):
                    pass
        text = mutate_text(text, rng)
    return text


def unlocated(diagnostics: list[Diagnostic], text: str) -> list[Diagnostic]:
    """Diagnostics that do not point at a real place of the text."""
    line_count = len(_YAML_BREAKS.split(text))  # YAML also breaks lines at \r, NEL, LS and PS
    return [d for d in diagnostics
            if not (1 <= d.line <= line_count + 1 and d.column >= 1 and d.path and d.message
                    and d.code)]


@dataclass
class FuzzReport:
    cases: int = 0
    crashes: int = 0
    unlocated: int = 0
    still_valid: int = 0
    invalid: int = 0
    diagnostics: int = 0
    seconds: float = 0.0
    examples: list[dict[str, str]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "crashes": self.crashes,
            "unlocated_errors": self.unlocated,
            "still_valid": self.still_valid,
            "invalid": self.invalid,
            "diagnostics_per_invalid_case": round(self.diagnostics / self.invalid, 2)
            if self.invalid else 0.0,
            "seconds": round(self.seconds, 2),
            "cases_per_second": round(self.cases / self.seconds, 1) if self.seconds else 0.0,
            "failures": self.examples[:5],
        }


def check_case(text: str) -> tuple[bool, list[Diagnostic]]:
    """Validate one text; returns (valid, unlocated diagnostics). Exceptions propagate (a crash)."""
    result = validate_text(text, "fuzz.yaml")
    return result.valid(), unlocated(result.diagnostics, text)


def run(cases: int, seed: int = 0, progress: Callable[[int], None] | None = None) -> FuzzReport:
    rng = random.Random(seed)
    seeds = seed_texts()
    report = FuzzReport()
    start = time.perf_counter()
    for n in range(cases):
        text = mutate(rng.choice(seeds), rng)
        report.cases += 1
        try:
            valid, bad = check_case(text)
        except Exception:
            report.crashes += 1
            report.examples.append({"kind": "crash", "text": text[:2000],
                                    "traceback": traceback.format_exc()[-2000:]})
            continue
        if valid:
            report.still_valid += 1
        else:
            report.invalid += 1
            report.diagnostics += len(validate_text(text, "fuzz.yaml").diagnostics)
        if bad:
            report.unlocated += 1
            report.examples.append({"kind": "unlocated", "text": text[:2000],
                                    "diagnostic": bad[0].format()})
        if progress and n % 1000 == 0:
            progress(n)
    report.seconds = time.perf_counter() - start
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    report = run(args.cases, args.seed)
    print(json.dumps(report.as_json(), indent=2))
    return 0 if report.crashes == 0 and report.unlocated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
