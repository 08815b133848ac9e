"""The renderer follows spec section 13: native values, missing values, precedence, the sandbox."""

from __future__ import annotations

import pytest

from engine.dsl.context import build_context
from engine.dsl.results import wrap_result
from engine.dsl.templates import TemplateRenderer
from engine.errors import TemplateError
from engine.protocol.sql_result import StatementResult, sql_result


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    return TemplateRenderer(functions={"token": lambda name: f"token-for-{name}"})


def render(renderer: TemplateRenderer, template: object, **context: object):
    return renderer.render(template, build_context(**context))  # type: ignore[arg-type]


def test_a_single_expression_yields_its_native_value(renderer: TemplateRenderer) -> None:
    out = render(renderer, "{{ workload.users }}", workload={"users": [1, 2]})
    assert out.value == [1, 2]
    assert render(renderer, "  {{ workload.n * 2 }} ", workload={"n": 4}).value == 8
    assert render(renderer, "{{ workload.m }}", workload={"m": {"a": 1}}).value == {"a": 1}
    assert render(renderer, "n={{ workload.n }}", workload={"n": 4}).value == "n=4"


def test_rendering_goes_recursively_through_dicts_and_lists(renderer: TemplateRenderer) -> None:
    out = render(renderer, {"a": ["{{ workload.x }}", {"b": "v{{ workload.x }}"}], "c": 5},
                 workload={"x": 1})
    assert out.value == {"a": [1, {"b": "v1"}], "c": 5}


def test_a_missing_value_is_falsy_empty_null_and_warned(renderer: TemplateRenderer) -> None:
    assert render(renderer, "{{ ctx.note }}").value is None
    out = render(renderer, "note: {{ ctx.note }}")
    assert out.value == "note: "
    assert out.warnings == ("`ctx.note` was not set",)
    assert render(renderer, "{{ 'yes' if ctx.flag else 'no' }}").value == "no"


def test_default_replaces_a_missing_value_without_a_warning(renderer: TemplateRenderer) -> None:
    out = render(renderer, "{{ ctx.label | default('none') }}")
    assert out.value == "none"
    assert out.warnings == ()


def test_reading_into_a_missing_value_is_an_undefined_variable_error(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError) as err:
        renderer.render("{{ team.slack.id }}", build_context(workload={"team": {}}), where="step notify")
    assert err.value.kind == "undefined_variable"
    assert "`team.slack.id`" in str(err.value)
    assert "step notify" in str(err.value)


def test_a_step_that_has_not_run_is_null_so_the_branch_not_taken_can_be_tested(
        renderer: TemplateRenderer) -> None:
    ctx = build_context(step_names=["left", "right"], results={"right": wrap_result({"side": "right"})})
    out = renderer.render("{{ left.side if left else right.side }}", ctx)
    assert out.value == "right"
    assert out.warnings == ()
    assert renderer.render("{{ left }}", ctx).value is None
    with pytest.raises(TemplateError) as err:
        renderer.render("{{ left.side }}", ctx)
    assert err.value.kind == "undefined_variable" and "`left.side`" in str(err.value)


def test_a_sql_result_is_read_by_its_keys(renderer: TemplateRenderer) -> None:
    rows = [{"id": 7, "name": "a"}, {"id": 8, "name": "b"}]
    q = wrap_result(sql_result([StatementResult(["id", "name"], rows), StatementResult(affected=2)]))
    ctx = build_context(step_names=["q"], results={"q": q})
    assert renderer.render("{{ q.rows }}", ctx).value == rows
    assert renderer.render("{{ q.command_0.rows[0].id }}", ctx).value == 7
    assert renderer.render("{{ q.command_1.row_count }}", ctx).value == 2
    assert renderer.render("{{ q.row_count }} of {{ q.statement_count }}", ctx).value == "2 of 2"
    assert renderer.render("{{ q.rows | length > 0 }}", ctx).value is True


def test_step_results_fall_back_to_their_data_and_a_revision_1_list_of_rows_keeps_its_sql_handles(
        renderer: TemplateRenderer) -> None:
    rows = wrap_result([{"name": "a", "age": 1}, {"name": "b", "age": 2}], statement_count=3)
    http = wrap_result({"status_code": 200, "data": {"items": [1]}})
    ctx = build_context(step_names=["q", "h"], results={"q": rows, "h": http})
    assert renderer.render("{{ q }}", ctx).value == [{"name": "a", "age": 1}, {"name": "b", "age": 2}]
    assert renderer.render("{{ q.row_count }}", ctx).value == 2
    assert renderer.render("{{ q.columns }}", ctx).value == ["name", "age"]
    assert renderer.render("{{ q.rows[1].name }}", ctx).value == "b"
    assert renderer.render("{{ q.statement_count }}", ctx).value == 3
    assert renderer.render("{{ h.status_code }}", ctx).value == 200
    assert renderer.render("{{ h.items }}", ctx).value == [1]


def test_loop_results_expose_results_and_stats(renderer: TemplateRenderer) -> None:
    loop = wrap_result([1, None, 3], stats={"total": 3, "succeeded": 2, "failed": 1})
    ctx = build_context(step_names=["each"], results={"each": loop})
    assert renderer.render("{{ each.results }}", ctx).value == [1, None, 3]
    assert renderer.render("{{ each.stats.failed }}", ctx).value == 1


def test_context_precedence_from_workload_keys_up_to_keychain(renderer: TemplateRenderer) -> None:
    ctx = build_context(
        workload={"x": "workload-key", "user": "w", "input": "w", "event": "w"},
        ctx={"a": 1}, step_names=["user"], results={"user": "step"},
        iterator="user", iter_vars={"user": "item", "_index": 2},
        input={"i": 1}, output={"status": "ok", "data": {"d": 1}}, event={"name": "call.done"},
        execution_id="e1", keychain={"api": {"token": "t"}},
    )
    assert renderer.render("{{ x }}", ctx).value == "workload-key"
    assert renderer.render("{{ user }}", ctx).value == "item"  # iterator beats a step name
    assert renderer.render("{{ iter._index }} {{ loop_index }}", ctx).value == "2 2"
    assert renderer.render("{{ input.i }}", ctx).value == 1
    assert renderer.render("{{ output.response.d }}", ctx).value == 1
    assert renderer.render("{{ event.name }}", ctx).value == "call.done"
    assert renderer.render("{{ job.uuid }}/{{ job.id }}", ctx).value == "e1/e1"
    assert renderer.render("{{ keychain.api.token }}", ctx).value == "t"


def test_filters_and_token_function(renderer: TemplateRenderer) -> None:
    assert render(renderer, "{{ workload.m | tojson }}", workload={"m": {"a": "<b>"}}).value == \
        '{"a": "<b>"}'
    assert render(renderer, "{{ 'hi' | b64encode }}").value == "aGk="
    assert render(renderer, "{{ 'aGk=' | b64decode }}").value == "hi"
    assert render(renderer, "{{ token('oauth') }}").value == "token-for-oauth"


def test_mapping_keys_win_over_dict_methods(renderer: TemplateRenderer) -> None:
    assert render(renderer, "{{ workload.m.items }}", workload={"m": {"items": [1]}}).value == [1]
    assert render(renderer, "{% for k, v in workload.m.items() %}{{ k }}{% endfor %}",
                  workload={"m": {"a": 1}}).value == "a"


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ workload.__class__ }}",
    "{{ [].append(1) }}",
    "{{ 'a' * 100000000 }}",
    "{{ 9 ** 99999999 }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '{0:999999999}'.format(1) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxx{% endfor %}{% endfor %}",
])
def test_sandbox_escapes_and_blow_ups_are_refused(renderer: TemplateRenderer, template: str) -> None:
    with pytest.raises(TemplateError) as err:
        render(renderer, template, workload={})
    assert err.value.kind == "validation"
    assert "refused" in str(err.value)


def test_imports_are_not_possible(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError):
        render(renderer, "{% import 'os' as os %}{{ os }}")


def test_a_template_runtime_error_names_the_template(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError) as err:
        render(renderer, "{{ 1 / 0 }}")
    assert "division by zero" in str(err.value) and "{{ 1 / 0 }}" in str(err.value)


def test_syntax_errors_are_found_without_rendering(renderer: TemplateRenderer) -> None:
    assert renderer.syntax_error("{{ x | }}") is not None
    assert renderer.syntax_error("{% if x %}") is not None
    assert renderer.syntax_error("{{ a.b if a else c }}") is None
