"""Property: a mutated playbook never crashes the reader, and every problem it reports is located."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.suites import dsl_fuzz
from tests.conftest import EXAMPLES

SEEDS = dsl_fuzz.seed_texts()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed_index=st.integers(min_value=0, max_value=len(SEEDS) - 1), rng=st.randoms(use_true_random=False))
def test_a_mutated_playbook_never_crashes_and_every_error_is_located(seed_index: int,
                                                                      rng: random.Random) -> None:
    text = dsl_fuzz.mutate(SEEDS[seed_index], rng)
    valid, unlocated = dsl_fuzz.check_case(text)
    assert unlocated == [], [d.format() for d in unlocated]


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=400))
def test_arbitrary_text_never_crashes_the_reader(text: str) -> None:
    valid, unlocated = dsl_fuzz.check_case(text)
    assert not unlocated


def test_the_fuzzing_eval_reports_its_figures() -> None:
    report = dsl_fuzz.run(cases=300, seed=7).as_json()
    assert report["cases"] == 300
    assert report["crashes"] == 0 and report["unlocated_errors"] == 0
    assert report["invalid"] > 0 and report["still_valid"] > 0
    assert report["still_valid"] + report["invalid"] == 300


def test_the_seeds_include_every_example() -> None:
    assert len(SEEDS) >= len(list(EXAMPLES.glob("*.yaml")))
