"""One typed settings tree for llmroute (``LLMROUTE_`` environment variables).

Nothing is created at import time: call :func:`load_settings` where settings are needed and
:meth:`Settings.ensure_home` before writing local state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDER = "minilm-static"


class Settings(BaseSettings):
    """Where llmroute keeps local state and which parts it uses by default."""

    model_config = SettingsConfigDict(env_prefix="LLMROUTE_", extra="ignore")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".llmroute",
        description="All local state: routers, MLflow store, embedding cache.",
    )
    embedder: str = Field(
        default=DEFAULT_EMBEDDER,
        description=(
            "Embedder: 'minilm-static' (static distillation of the bundled all-MiniLM-L6-v2), "
            "'minilm' (the bundled transformer itself), or any sentence-transformers model name or path."
        ),
    )
    tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking URI; default: a SQLite store under home (MLFLOW_TRACKING_URI also works).",
    )
    registered_model: str = Field(default="llmroute", description="MLflow registered model name.")

    @property
    def routers_dir(self) -> Path:
        return self.home / "routers"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def embedders_dir(self) -> Path:
        return self.home / "embedders"

    def ensure_home(self) -> Path:
        for d in (self.home, self.routers_dir, self.cache_dir, self.embedders_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self.home


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit overrides (None values are ignored)."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)
