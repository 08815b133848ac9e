"""Large results by reference (spec section 9): data over the inline limit goes to a file (or, with
`output.store.kind: kv | object`, to the NATS object store: the step runner puts the bytes `encode` made),
the event carries a `ResultRef` (URI, size, format, row count, schema, preview), and `resolve` loads it
back.

A list of flat objects (the same keys in every row; each column only null/bool/int/float/str, ints and
floats may mix and then read back as floats) is stored as an Arrow IPC file (zstd-compressed when the
codec is available); so is a SQL result (spec 3.2) whose rows are flat: its rows are the table, stored
once, and the rest of it (counts, columns, each statement's summary) rides in the schema's metadata.
Anything else is JSON. Files live under `<work_dir>/artifacts/`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import EngineError
from engine.protocol.results import ResultRef, fold_body_alias, unfold_body_alias
from engine.protocol.sql_result import is_sql_result

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD_BYTES = 64 * 1024
PREVIEW_ROWS = 5
PREVIEW_BYTES = 4096
_SCALAR_TYPES = {type(None), bool, int, float, str}
_COMPATIBLE: tuple[set[type], ...] = ({bool}, {int}, {float}, {int, float}, {str}, set())
_SQL_KEY = b"noetl.sql_result"  # Arrow schema metadata: a SQL result without the rows of the table


class ArtifactError(EngineError):
    code = "artifact_error"


def json_size(data: Any) -> int:
    """The size in bytes of `data` as compact UTF-8 JSON, as stored (an http body once)."""
    return len(json.dumps(fold_body_alias(data), separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Encoded:
    """A result as stored: its bytes, their format, and what a reference tells about them."""

    payload: bytes
    format: Literal["arrow", "json"]
    row_count: int | None
    schema: dict[str, str] | None

    def ref(self, uri: str, data: Any) -> ResultRef:
        return ResultRef(uri=uri, size=len(self.payload), format=self.format, row_count=self.row_count,
                         schema=self.schema, preview=preview(data))


def encode(data: Any) -> Encoded:
    """`data` as stored: an Arrow IPC file for flat rows (or a SQL result's flat rows), else JSON."""
    sql = is_sql_result(data)
    if _is_flat_table(data["rows"] if sql else data):
        try:
            return _arrow(data)
        except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
            log.debug("rows not storable as Arrow (%s); storing JSON", exc)
    payload = json.dumps(fold_body_alias(data), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    row_count = data["row_count"] if sql else len(data) if isinstance(data, list) else None
    return Encoded(payload, "json", row_count, None)


def decode(payload: bytes, format: str) -> Any:
    """The data `encode` stored (Arrow and Parquet → a list of objects, or the SQL result)."""
    if format == "arrow":
        table = pa.ipc.open_file(pa.BufferReader(payload)).read_all()
        rest = (table.schema.metadata or {}).get(_SQL_KEY)
        return table.to_pylist() if rest is None else _sql_whole(table.to_pylist(), rest)
    if format == "parquet":
        return pq.read_table(pa.BufferReader(payload)).to_pylist()
    return unfold_body_alias(json.loads(payload))


def externalize(data: Any, work_dir: Path | str,
                threshold_bytes: int = DEFAULT_THRESHOLD_BYTES) -> tuple[Any | None, ResultRef | None]:
    """(data, None) when `data` is small enough to stay inline; else (None, a reference to a file)."""
    size = json_size(data)
    if size <= threshold_bytes:
        return data, None
    folder = Path(work_dir) / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    encoded = encode(data)
    path = folder / f"{uuid.uuid4().hex}.{encoded.format}"
    path.write_bytes(encoded.payload)
    return None, encoded.ref(_uri(path), data)


def resolve(ref: ResultRef | Mapping[str, Any],
            read_object: Callable[[str], bytes] | None = None) -> Any:
    """The data a reference points at: a file here, or (given `read_object`, which returns the stored
    bytes of a URI) an object elsewhere such as the NATS object store."""
    ref = ref if isinstance(ref, ResultRef) else ResultRef.model_validate(ref)
    parts = urlsplit(ref.uri)
    if parts.scheme not in ("file", ""):
        if read_object is None:
            raise ArtifactError(f"cannot read the result reference '{ref.uri}'",
                                fix="read it in a process connected to where it is stored (NATS)")
        try:
            payload = read_object(ref.uri)
        except EngineError as exc:
            raise ArtifactError(f"the stored result '{ref.uri}' could not be read: {exc}",
                                fix="check that NATS is running and still holds the deployment's results "
                                    "bucket") from None
        return decode(payload, ref.format)
    path = Path(unquote(parts.path))
    if not path.exists():
        raise ArtifactError(f"the stored result '{path}' does not exist", where=ref.uri)
    return decode(path.read_bytes(), ref.format)


def preview(data: Any) -> Any:
    """A small look at `data`: the first rows or keys, kept under PREVIEW_BYTES of JSON."""
    if is_sql_result(data):
        counts = {k: data[k] for k in ("row_count", "columns", "statement_count")}
        return {"rows": preview(data["rows"]), **(counts if json_size(counts) <= PREVIEW_BYTES // 4 else {})}
    if isinstance(data, list):
        head: list[Any] = []
        for item in data[:PREVIEW_ROWS]:
            if json_size([*head, item]) > PREVIEW_BYTES:
                break
            head.append(item)
        return head
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            candidate = value if json_size(value) <= PREVIEW_BYTES // 4 else "…"
            if json_size({**out, key: candidate}) > PREVIEW_BYTES:
                break
            out[key] = candidate
        return out
    if isinstance(data, str):
        return data[:PREVIEW_BYTES // 4]
    return data if json_size(data) <= PREVIEW_BYTES else None


def _is_flat_table(data: Any) -> bool:
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        return False
    keys = list(data[0])
    key_set = set(keys)
    types: dict[str, set[type]] = {k: set() for k in keys}
    for row in data:
        if row.keys() != key_set:
            return False
        for key, value in row.items():
            kind = type(value)
            if kind not in _SCALAR_TYPES:
                return False
            if value is not None:
                types[key].add(kind)
    return all(t in _COMPATIBLE for t in types.values())


def _sql_rest(result: Mapping[str, Any]) -> bytes:
    """A SQL result without its rows; a statement whose rows are those rows keeps `rows: null`."""
    rows = result["rows"]
    rest: dict[str, Any] = {}
    for key, value in result.items():
        if key == "rows":
            continue
        shared = isinstance(value, Mapping) and (value.get("rows") is rows or value.get("rows") == rows)
        rest[key] = {**value, "rows": None} if shared else value
    return json.dumps(rest, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _sql_whole(rows: list[dict[str, Any]], rest: bytes) -> dict[str, Any]:
    parts = json.loads(rest)
    whole: dict[str, Any] = {"rows": rows}
    for key, value in parts.items():
        whole[key] = {**value, "rows": rows} if isinstance(value, dict) and value.get("rows") is None \
            else value
    return whole


def _arrow(data: Any) -> Encoded:
    """`data`: flat rows, or a SQL result whose rows are flat."""
    rows = data["rows"] if isinstance(data, Mapping) else data
    keys = list(rows[0])
    table = pa.table({k: pa.array([row[k] for row in rows]) for k in keys})
    if isinstance(data, Mapping):
        table = table.replace_schema_metadata({_SQL_KEY: _sql_rest(data)})
    compression = "zstd" if pa.Codec.is_available("zstd") else None
    options = pa.ipc.IpcWriteOptions(compression=compression)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    schema = {f.name: str(f.type) for f in table.schema}
    return Encoded(sink.getvalue().to_pybytes(), "arrow", table.num_rows, schema)


def _uri(path: Path) -> str:
    return "file://" + quote(str(path.resolve()))
