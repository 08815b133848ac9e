"""Every error as application/problem+json (RFC 9457) with NoETL's code, where and fix.

Errors raised on purpose (engine.errors.NoetlError) keep their message; anything else is a 500 whose
body names no internals (the traceback goes to the log). A bad request is never a 5xx.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from control_plane.errors import (
    ConflictError,
    ControlPlaneError,
    DatabaseUnavailableError,
    ForbiddenError,
    InvalidArgumentError,
    MigrationError,
    NotFoundError,
    UnauthorizedError,
)
from control_plane.services.catalog import PlaybookInvalidError
from engine.bus.jetstream import BusError
from engine.errors import NoetlError

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://noetl.dev/problems/"


class MalformedBodyError(ControlPlaneError):
    """The body is not the JSON or YAML it claims to be (or not UTF-8, or bad base64)."""

    code = "malformed_body"


class UnsupportedMediaTypeError(ControlPlaneError):
    code = "unsupported_media_type"


class BodyTooLargeError(ControlPlaneError):
    code = "body_too_large"


# most specific first: the first class an error is an instance of decides its status
_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (MalformedBodyError, 400),
    (InvalidArgumentError, 400),
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (NotFoundError, 404),
    (ConflictError, 409),
    (BodyTooLargeError, 413),
    (UnsupportedMediaTypeError, 415),
    (PlaybookInvalidError, 422),
    (DatabaseUnavailableError, 503),
    (MigrationError, 503),
    (BusError, 503),
)
_CODES_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
                    413: "body_too_large", 415: "unsupported_media_type", 422: "invalid_request",
                    500: "internal_error", 503: "unavailable"}
_YAML_SYNTAX = "yaml_syntax"


def status_of(exc: BaseException) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(status: int, *, code: str, detail: str, where: str | None = None, fix: str | None = None,
            errors: Sequence[Mapping[str, Any]] | None = None, title: str | None = None,
            headers: Mapping[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + code, "title": title or _phrase(status), "status": status,
                            "detail": detail, "code": code, "where": where, "fix": fix}
    if errors is not None:
        body["errors"] = [dict(e) for e in errors]
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=dict(headers or {}))


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def located(diagnostics: Iterable[Any]) -> list[dict[str, Any]]:
    """Diagnostics as the API shows them: {line, column, code, path, message}."""
    return [{"line": d.line, "column": d.column, "code": d.code, "path": d.path, "message": d.message}
            for d in diagnostics]


def noetl_error_response(exc: NoetlError) -> JSONResponse:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, PlaybookInvalidError):
        errors = [d for d in exc.diagnostics if d.severity == "error"] or list(exc.diagnostics)
        if any(d.code == _YAML_SYNTAX for d in errors):  # not YAML at all: a malformed body
            first = errors[0]
            return problem(400, code="malformed_yaml", detail=f"the body is not valid YAML: {first.message}",
                           where=f"line {first.line}, column {first.column}", fix="fix the YAML syntax",
                           errors=located(errors))
        detail = "the playbook does not validate: " + "; ".join(
            f"{d.line}:{d.column} {d.path}: {d.message}" for d in errors[:5])
        return problem(422, code=exc.code, detail=detail, where=exc.where, fix=exc.fix,
                       errors=located(errors))
    if status == 500:
        log.error("%s answered as an internal error: %s", type(exc).__name__, exc)
    return problem(status, code=exc.code, detail=exc.message, where=exc.where, fix=exc.fix, headers=headers)


def _field_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # never the input: it may hold a credential's value
    return [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
             "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    broken = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if broken is not None:
        reason = (broken.get("ctx") or {}).get("error", "JSON decode error")
        position = broken.get("loc", ("body", 0))[-1]
        return problem(400, code="malformed_json", detail=f"the body is not valid JSON: {reason} "
                       f"(at character {position})", where="body",
                       fix="send a JSON document with Content-Type: application/json",
                       errors=_field_errors(errors))
    fields = _field_errors(errors)
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in fields[:5])
    return problem(422, code="invalid_request", detail=f"the request does not match its schema: {detail}",
                   where=".".join(str(p) for p in fields[0]["loc"]) if fields else None,
                   fix="see the operation's schema in GET /openapi.json", errors=fields)


def http_error_response(exc: StarletteHTTPException) -> JSONResponse:
    status = exc.status_code
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(status)
    fix = None
    if status == 404:
        detail, fix = "no such endpoint", "see GET /openapi.json for the endpoints"
    elif status == 405:
        fix = f"allowed: {(exc.headers or {}).get('Allow', '?')}"
    return problem(status, code=_CODES_BY_STATUS.get(status, f"http_{status}"), detail=detail, fix=fix,
                   headers=exc.headers)


def _is_database_down(exc: BaseException) -> bool:
    """psycopg's OperationalError (a lost or refused connection), recognized without importing the
    driver: only the store talks to Postgres."""
    return any(cls.__name__ == "OperationalError" and cls.__module__.startswith("psycopg")
               for cls in type(exc).__mro__)


def unexpected_response(exc: BaseException, request_line: str) -> JSONResponse:
    if _is_database_down(exc):
        log.warning("Postgres is unreachable while answering %s: %s", request_line, type(exc).__name__)
        return problem(503, code="database_unavailable", detail="Postgres is unreachable",
                       fix="check that Postgres is running; retry shortly")
    log.error("unexpected error while answering %s", request_line, exc_info=exc)
    return problem(500, code="internal_error", detail="the server failed to answer this request",
                   fix="the server's log has the details; retry, or report it")


def install(app: FastAPI) -> None:
    """Register the handlers: NoetlError, request validation, HTTP errors."""

    async def on_noetl(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, NoetlError)
        return noetl_error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_response(exc)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return http_error_response(exc)

    app.add_exception_handler(NoetlError, on_noetl)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses an operation may answer, each a problem+json document."""
    return {status: {"description": _phrase(status),
                     "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for status in statuses}
