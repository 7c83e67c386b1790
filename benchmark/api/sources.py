"""Where a pretrained model comes from: a local folder, or (when online) a hub repository."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import snapshot_download

from benchmark.core.errors import BenchmarkError, first_line


def resolve_source(path: str) -> Path:
    """A local folder as it is; an ``owner/name`` that is not a folder is fetched from the hub
    (safetensors, configs and tokenizer files only) and returned as its cache folder."""
    folder = Path(path).expanduser()
    if folder.is_dir() or path.startswith((".", "/", "~")) or path.count("/") != 1:
        return folder
    try:
        fetched = snapshot_download(path, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    except Exception as error:  # offline, unknown repository, no access: all end the same way
        reason = first_line(error)
        raise BenchmarkError(
            f"cannot fetch model '{path}' from the hub ({reason}); offline, download it elsewhere with "
            "save_pretrained and pass the folder"
        ) from None
    return Path(fetched)
