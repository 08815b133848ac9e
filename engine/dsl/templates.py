"""The sandboxed Jinja2 renderer of spec section 13, used wherever a playbook string is evaluated.

- A string that is exactly one `{{ expression }}` yields its native value (list, dict, number).
- A missing name or key is falsy, renders empty (`null` natively), works with `default` and `if`,
  and is recorded as a warning; reading an attribute or item OF a missing value is an
  `undefined_variable` error naming the whole expression, unless the expression guards the read
  (under `default(...)` / `d(...)`, `is defined` / `is undefined`, or the test of an `if`), where it
  is missing too; in a `when` condition every such read is missing, so false (revision 2).
- No access to internals, no imports, bounded output; mappings are read by key before attribute.
"""

from __future__ import annotations

import base64
import contextvars
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from jinja2 import TemplateSyntaxError, Undefined, nodes, pass_environment
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from markupsafe import Markup

from engine.dsl.results import ResultDict
from engine.errors import TemplateError

MAX_OUTPUT_CHARS = 1_000_000
MAX_SEQUENCE_ITEMS = 100_000
_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_FORMAT_WIDTH = re.compile(r"%[-+ #0]*(\d{5,})|%[-+ #0]*\d*\.(\d{5,})")
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\d{5,}[^{}]*\}")


@dataclass
class _RenderState:
    paths: dict[int, str]
    warnings: list[str]


_STATE: contextvars.ContextVar[_RenderState | None] = contextvars.ContextVar("noetl_render",
                                                                             default=None)


def _warn(message: str) -> None:
    state = _STATE.get()
    if state is not None and message not in state.warnings:
        state.warnings.append(message)


def _path_of(obj: Any) -> str | None:
    state = _STATE.get()
    return state.paths.get(id(obj)) if state is not None else None


class MissingValue(Undefined):
    """A name or key that is not set: falsy, empty, null; reading into it is an error."""

    __slots__ = ("_noetl_path", "_noetl_quiet")

    def __init__(self, hint: str | None = None, obj: Any = missing, name: str | None = None,
                 exc: type[Exception] = TemplateError, *, path: str | None = None,
                 quiet: bool = False) -> None:
        super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]
        if path is None:
            parent = None if obj is missing else _path_of(obj)
            path = f"{parent}.{name}" if parent else str(name)
        self._noetl_path = path
        self._noetl_quiet = quiet

    @property
    def noetl_path(self) -> str:
        return self._noetl_path

    def _note(self) -> None:
        if not self._noetl_quiet:
            _warn(f"`{self._noetl_path}` was not set")

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        raise TemplateError(f"`{self._noetl_path}` is not set, so it cannot be used here",
                            kind="undefined_variable", expression=self._noetl_path,
                            fix="set it first, or use `| default(...)`")

    def read(self, attr: Any) -> Any:
        expr = f"{self._noetl_path}.{attr}" if isinstance(attr, str) else f"{self._noetl_path}[{attr!r}]"
        raise TemplateError(f"`{expr}` cannot be read: `{self._noetl_path}` is not set",
                            kind="undefined_variable", expression=expr,
                            fix=f"check that `{self._noetl_path}` is set, or guard it with "
                                f"`{{% if {self._noetl_path} %}}` / `| default(...)`")

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return self.read(name)

    def __getitem__(self, key: Any) -> Any:
        return self.read(key)

    def __str__(self) -> str:
        self._note()
        return ""

    def __bool__(self) -> bool:
        self._note()
        return False

    def __iter__(self) -> Iterator[Any]:
        self._note()
        return iter(())

    def __len__(self) -> int:
        self._note()
        return 0

    def __repr__(self) -> str:
        return f"MissingValue({self._noetl_path!r})"


class NotRun:
    """A step without a result: defined, null (`is none`, `== none`), falsy, empty; reading into it is
    an `undefined_variable` error that names the expression (spec 13)."""

    __slots__ = ("step",)

    def __init__(self, step: str) -> None:
        self.step = step

    def read(self, attr: Any) -> Any:
        expr = f"{self.step}.{attr}" if isinstance(attr, str) else f"{self.step}[{attr!r}]"
        raise TemplateError(f"`{expr}` cannot be read: step `{self.step}` has not run (its result is null)",
                            kind="undefined_variable", expression=expr,
                            fix=f"guard it: `{{{{ {expr} if {self.step} else ... }}}}`")

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return ""

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, NotRun)

    def __hash__(self) -> int:
        return hash(None)

    def __repr__(self) -> str:
        return f"NotRun({self.step!r})"


def not_run(step: str) -> NotRun:
    """What a step's name is bound to before the step has a result: null, with no warning."""
    return NotRun(step)


def _tojson(value: Any, indent: int | None = None) -> Markup:
    return Markup(json.dumps(to_native(value), indent=indent, default=str, ensure_ascii=False))


def _b64encode(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode()
    return base64.b64encode(data).decode()


def _b64decode(value: Any) -> str:
    return base64.b64decode(str(value)).decode("utf-8", errors="replace")


def _finalize(value: Any) -> Any:
    if value is None or isinstance(value, NotRun):
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(to_native(value), default=str, ensure_ascii=False)
    return value


_SOFT_ATTR = "_noetl_soft_attr"
_SOFT_ITEM = "_noetl_soft_item"
_GUARD_FILTERS = frozenset({"default", "d"})
_GUARD_TESTS = frozenset({"defined", "undefined"})


def _soft_missing(obj: Any, key: Any) -> MissingValue | None:
    """A quiet missing value when `obj` cannot be read into (missing, not run or null), else None."""
    if isinstance(obj, MissingValue):
        parent: str | None = obj.noetl_path
    elif isinstance(obj, NotRun):
        parent = obj.step
    elif obj is None:
        parent = _path_of(obj)
    else:
        return None
    expr = (f"{parent}.{key}" if isinstance(key, str) else f"{parent}[{key!r}]") if parent else str(key)
    return MissingValue(path=expr, quiet=True)


@pass_environment
def _soft_attr(env: SandboxEnvironment, obj: Any, attr: str) -> Any:
    missing_value = _soft_missing(obj, attr)
    return missing_value if missing_value is not None else env.getattr(obj, attr)


@pass_environment
def _soft_item(env: SandboxEnvironment, obj: Any, key: Any) -> Any:
    missing_value = _soft_missing(obj, key)
    return missing_value if missing_value is not None else env.getitem(obj, key)


_N = TypeVar("_N", bound=nodes.Node)


@overload
def _soften(node: nodes.Expr) -> nodes.Expr: ...
@overload
def _soften(node: nodes.Template) -> nodes.Template: ...
@overload
def _soften(node: nodes.Node) -> nodes.Node: ...
def _soften(node: nodes.Node) -> nodes.Node:
    """The same expression with every attribute and item read made soft: reading into a missing or
    null value yields a missing value instead of an error."""
    if isinstance(node, nodes.Getattr) and node.ctx == "load":
        return nodes.Filter(_soften(node.node), _SOFT_ATTR, [nodes.Const(node.attr)], [], None, None,
                            lineno=node.lineno)
    if isinstance(node, nodes.Getitem) and node.ctx == "load":
        return nodes.Filter(_soften(node.node), _SOFT_ITEM, [_soften(node.arg)], [], None, None,
                            lineno=node.lineno)
    for field in node.fields:
        value = getattr(node, field, None)
        if isinstance(value, nodes.Node):
            setattr(node, field, _soften(value))
        elif isinstance(value, list):
            setattr(node, field, [_soften(v) if isinstance(v, nodes.Node) else v for v in value])
    return node


def _soften_guarded(node: _N) -> _N:
    """Soften the parts of a template that guard their reads (spec 13): the value under `default`,
    the subject of `is defined` / `is undefined`, the test of an `if` (inline or a block)."""
    if isinstance(node, nodes.Filter) and node.name in _GUARD_FILTERS and node.node is not None:
        node.node = _soften(node.node)
    elif isinstance(node, nodes.Test) and node.name in _GUARD_TESTS:
        node.node = _soften(node.node)
    elif isinstance(node, (nodes.CondExpr, nodes.If)) and node.test is not None:
        node.test = _soften(node.test)
    for child in node.iter_child_nodes():
        _soften_guarded(child)
    return node


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The playbook's Jinja2 environment: sandboxed, size-bounded, mapping keys before attributes."""

    intercepted_binops = frozenset(["*", "**", "%"])

    def __init__(self, *, condition: bool = False) -> None:
        super().__init__(undefined=MissingValue, finalize=_finalize, autoescape=False,
                         keep_trailing_newline=True)
        self.condition = condition  # a `when` condition: every read into a missing value is soft
        self.filters[_SOFT_ATTR] = _soft_attr
        self.filters[_SOFT_ITEM] = _soft_item
        self.filters["tojson"] = _tojson
        self.filters["b64encode"] = _b64encode
        self.filters["b64decode"] = _b64decode
        center = self.filters["center"]
        self.filters["center"] = lambda s, width=80: center(s, min(int(width), MAX_OUTPUT_CHARS))
        for unsafe in ("lipsum", "cycler", "joiner"):
            self.globals.pop(unsafe, None)
        self.tests["none"] = lambda value: value is None or isinstance(value, NotRun)

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        source = _soften(source) if self.condition else _soften_guarded(source)
        return super()._generate(source, name, filename, defer_init=defer_init)

    # -- lookups ---------------------------------------------------------------------------------
    def _lookup(self, obj: Any, key: Any, prefer_item: bool) -> Any:
        if isinstance(obj, (MissingValue, NotRun)):
            return obj.read(key)
        if obj is None:
            parent = _path_of(obj)
            expr = f"{parent}.{key}" if parent else str(key)
            raise TemplateError(f"`{expr}` cannot be read: the value is null", kind="undefined_variable",
                                expression=expr, fix="guard it with `{% if ... %}` or `| default(...)`")
        if isinstance(obj, Mapping):
            if key in obj:
                return self._track(obj, key, obj[key])
            if isinstance(obj, ResultDict) and isinstance(key, str):
                found, value = obj.fallback(key)
                if found:
                    return self._track(obj, key, value)
            if not prefer_item and isinstance(key, str):
                return super().getattr(obj, key)
            return self.undefined(obj=obj, name=key)
        if isinstance(obj, str) and key in ("format", "format_map") and _BRACE_WIDTH.search(obj):
            raise SecurityError("format widths above 9999 are not allowed")
        if prefer_item:
            value = super().getitem(obj, key)
        else:
            value = super().getattr(obj, key)
        return self._track(obj, key, value)

    @staticmethod
    def _track(obj: Any, key: Any, value: Any) -> Any:
        if isinstance(value, (dict, list)):
            state = _STATE.get()
            if state is not None:
                parent = state.paths.get(id(obj))
                if parent is not None:
                    state.paths[id(value)] = f"{parent}.{key}" if isinstance(key, str) else \
                        f"{parent}[{key!r}]"
        return value

    def getattr(self, obj: Any, attribute: str) -> Any:
        return self._lookup(obj, attribute, prefer_item=False)

    def getitem(self, obj: Any, argument: Any) -> Any:
        return self._lookup(obj, argument, prefer_item=True)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Any:
        raise SecurityError(f"access to attribute '{attribute}' of a {type(obj).__name__} is not allowed")

    # -- size bounds -----------------------------------------------------------------------------
    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * n > MAX_OUTPUT_CHARS:
                        raise SecurityError("the result of '*' would be too large")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and \
                    right > 0 and abs(left).bit_length() * right > 100_000:
                raise SecurityError("the result of '**' would be too large")
        elif operator == "%" and isinstance(left, str) and _FORMAT_WIDTH.search(left):
            raise SecurityError("format widths above 9999 are not allowed")
        return super().call_binop(context, operator, left, right)


def to_native(value: Any) -> Any:
    """Plain JSON-friendly data: missing values become null (with their warning), markup a string."""
    if isinstance(value, MissingValue):
        value._note()
        return None
    if isinstance(value, NotRun):
        return None
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, dict):
        return {k: to_native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_native(v) for v in value]
    if isinstance(value, Undefined):
        return None
    return value


@dataclass(frozen=True)
class Rendered:
    value: Any
    warnings: tuple[str, ...]


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def single_expression(text: str) -> str | None:
    """The expression of a string that is exactly one `{{ expression }}`, else None."""
    match = _SINGLE.match(text)
    if not match or "{%" in text:
        return None
    expr = match.group("expr")
    if "{{" in expr or "}}" in expr:
        return None
    return expr


class TemplateRenderer:
    """Renders values (recursively through dicts and lists) against a context."""

    def __init__(self, *, functions: Mapping[str, Callable[..., Any]] | None = None,
                 max_output_chars: int = MAX_OUTPUT_CHARS) -> None:
        self.env = SandboxEnvironment()
        self.env.globals.update(functions or {})
        self.condition_env = SandboxEnvironment(condition=True)
        self.condition_env.globals.update(functions or {})
        self.max_output_chars = max_output_chars
        self._templates: dict[tuple[bool, str], Any] = {}
        self._expressions: dict[tuple[bool, str], Any] = {}
        self._read_names: dict[str, frozenset[str]] = {}

    # -- checking --------------------------------------------------------------------------------
    def syntax_error(self, text: str) -> str | None:
        """A message when `text` is not a valid template, else None."""
        try:
            expr = single_expression(text)
            if expr is not None:
                self.env.compile_expression(expr, undefined_to_none=False)
            else:
                self.env.parse(text)
        except TemplateSyntaxError as exc:
            return f"template syntax error: {exc.message} (line {exc.lineno} of the template)"
        return None

    def referenced_names(self, value: Any) -> set[str]:
        """Top-level names the templates in `value` (recursively) read; unparsable ones read nothing."""
        found: set[str] = set()
        if isinstance(value, str):
            if is_template(value):
                try:
                    ast = self.env.parse(value)
                except TemplateSyntaxError:
                    return found
                found.update(n.name for n in ast.find_all(nodes.Name) if n.ctx == "load")
        elif isinstance(value, dict):
            for item in value.values():
                found |= self.referenced_names(item)
        elif isinstance(value, list):
            for item in value:
                found |= self.referenced_names(item)
        return found

    # -- rendering -------------------------------------------------------------------------------
    def render(self, value: Any, context: Mapping[str, Any], *, where: str = "",
               condition: bool = False) -> Rendered:
        """`condition`: a `when` condition, where reading into a null or missing value is false."""
        state = _RenderState(paths={}, warnings=[])
        token = _STATE.set(state)
        try:
            out = self._render(value, context, where, condition)
        finally:
            _STATE.reset(token)
        return Rendered(out, tuple(state.warnings))

    def _render(self, value: Any, context: Mapping[str, Any], where: str, condition: bool) -> Any:
        if isinstance(value, str):
            return self._render_text(value, context, where, condition) if is_template(value) else value
        if isinstance(value, dict):
            return {k: self._render(v, context, where, condition) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, context, where, condition) for v in value]
        return value

    def _names(self, text: str) -> frozenset[str]:
        names = self._read_names.get(text)
        if names is None:
            names = frozenset(self.referenced_names(text))
            self._cache(self._read_names, text, names)
        return names

    def _scope(self, text: str, context: Mapping[str, Any]) -> dict[str, Any]:
        """The names the template reads, from the context (a context may bind thousands of names and
        look them up lazily), with the paths warnings name a missing key by."""
        scope: dict[str, Any] = {}
        state = _STATE.get()
        paths = state.paths if state is not None else {}
        for name in self._names(text):
            if name in context:
                item = scope[name] = context[name]
                if isinstance(item, (dict, list)):
                    paths.setdefault(id(item), name)
        return scope

    def _render_text(self, text: str, context: Mapping[str, Any], where: str, condition: bool) -> Any:
        env = self.condition_env if condition else self.env
        try:
            expr = single_expression(text)
            scope = self._scope(text, context)
            if expr is not None:
                compiled = self._expressions.get((condition, expr))
                if compiled is None:
                    compiled = env.compile_expression(expr, undefined_to_none=False)
                    self._cache(self._expressions, (condition, expr), compiled)
                return to_native(compiled(**scope))
            template = self._templates.get((condition, text))
            if template is None:
                template = env.from_string(text)
                self._cache(self._templates, (condition, text), template)
            size = 0
            chunks: list[str] = []
            for chunk in template.generate(**scope):
                size += len(chunk)
                if size > self.max_output_chars:
                    raise SecurityError(f"output longer than {self.max_output_chars} characters")
                chunks.append(chunk)
            return "".join(chunks)
        except TemplateError as exc:
            raise TemplateError(f"{exc.message} in '{_short(text)}'", kind=exc.kind,
                                expression=exc.expression, where=where, fix=exc.fix) from None
        except SecurityError as exc:
            raise TemplateError(f"unsafe template refused: {exc} in '{_short(text)}'",
                                kind="validation", expression=text, where=where,
                                fix="templates may read data and call filters, not Python "
                                    "internals") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message} in '{_short(text)}'",
                                kind="validation", expression=text, where=where) from None
        except Exception as exc:  # a template's own runtime error (1/0, a bad filter argument)
            raise TemplateError(f"template error: {type(exc).__name__}: {exc} in '{_short(text)}'",
                                kind="validation", expression=text, where=where) from None

    @staticmethod
    def _cache(cache: dict[Any, Any], key: Any, value: Any) -> None:
        if len(cache) > 4096:
            cache.clear()
        cache[key] = value


def _short(text: str, limit: int = 200) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
