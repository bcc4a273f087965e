"""MLX models already in the Hugging Face cache, found offline: what `slmchat models` lists for MLX."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Hub owners that publish only MLX conversions
MLX_OWNERS = ("mlx-community",)


@dataclass(frozen=True)
class CachedMlxModel:
    """An MLX model in the Hugging Face cache: ``mlx:<repo_id>`` loads it without a download."""

    repo_id: str
    size_bytes: int
    #: "4-bit" etc. from the ``quantization`` table mlx-lm writes into config.json; None if unquantized
    quantization: str | None
    snapshot: Path


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def cached_models(cache_dir: Path | None = None) -> list[CachedMlxModel]:
    """MLX models already in the Hugging Face cache, found offline (``huggingface_hub.scan_cache_dir``).

    A cached model repo counts when one of its snapshots is loadable the way ``MlxBackend`` loads
    a folder (``config.json`` and ``model*.safetensors``) and it looks like an MLX conversion: it
    belongs to an MLX-only owner (``mlx-community``), its name contains "mlx", or its config.json
    has the ``quantization`` table (``bits``, ``group_size``) that ``mlx_lm.convert`` writes. Plain
    transformers repos are left out, though mlx-lm can load many of them. No cache: an empty list.
    """
    from huggingface_hub import CacheNotFound, scan_cache_dir

    try:
        info = scan_cache_dir(cache_dir or hf_cache_dir())
    except CacheNotFound:
        return []
    found = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        newest = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        names = {f.file_path.relative_to(newest.snapshot_path).as_posix() for f in newest.files}
        if "config.json" not in names or not any(_is_weights(n) for n in names):
            continue
        config = _read_config(newest.snapshot_path / "config.json")
        quantization = config.get("quantization") if isinstance(config.get("quantization"), dict) else None
        owner = repo.repo_id.partition("/")[0]
        mlx_made = quantization is not None and {"bits", "group_size"} <= set(quantization)
        if not (owner in MLX_OWNERS or "mlx" in repo.repo_id.lower() or mlx_made):
            continue
        bits = quantization.get("bits") if quantization else None
        found.append(
            CachedMlxModel(repo.repo_id, newest.size_on_disk, f"{bits}-bit" if bits else None, newest.snapshot_path)
        )
    return sorted(found, key=lambda m: m.repo_id.lower())


def _is_weights(name: str) -> bool:
    return name.startswith("model") and name.endswith(".safetensors") and "/" not in name


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
