"""Content-addressed artifact cache: a folder per key, built in a temp folder, verified on load."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list
from filelock import FileLock

from benchmark.core import runtime
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_file

MANIFEST = "manifest.json"


def default_cache_dir() -> Path:
    env = os.environ.get("MIA_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffusion-mia-bench"


class Cache:
    def __init__(self, root: Path, log: Callable[[str], None] = print) -> None:
        self.root = Path(root)
        self.log = log

    def get_or_build(self, kind: str, key: str, build: Callable[[Path, Path], dict[str, Any]]) -> tuple[Path, dict]:
        """Return the verified folder for ``key``, building it first when missing or corrupt.

        Under several processes (``accelerate launch``) all of them build together, because
        training is data parallel and needs every process; the main one decides whether to build
        and alone stores the result, which the others then read.
        """
        acc = runtime.accelerator()
        if acc.num_processes == 1:
            return self._get_or_build(kind, key, build)
        final = self.root / kind / key
        ready = [acc.is_main_process and final.exists() and verify(final) is None]
        broadcast_object_list(ready)
        if not ready[0]:
            if acc.is_main_process:
                self._get_or_build(kind, key, build)
            else:
                with tempfile.TemporaryDirectory() as work:
                    build(Path(work), final.parent / f".scratch-{key}")
        acc.wait_for_everyone()
        return final, json.loads((final / MANIFEST).read_text())["metadata"]

    def _get_or_build(self, kind: str, key: str, build: Callable[[Path, Path], dict[str, Any]]) -> tuple[Path, dict]:
        """The single-process path.

        ``build(folder, scratch)`` fills a temp folder and returns metadata; the folder appears
        under its key only once complete (rename), so a crash never leaves a half-written artifact.
        ``scratch`` persists across runs until the build succeeds: checkpoints of an interrupted
        build live there. A file lock per key lets concurrent runs share one cache: the second
        waits and then finds the first one's result.
        """
        final = self.root / kind / key
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(final.parent / f"{key}.lock"))
            lock.acquire()
        except OSError as error:
            raise BenchmarkError(
                f"cannot write the cache at {self.root} ({error.strerror}); pass --cache DIR"
            ) from None
        try:
            if final.exists():
                problem = verify(final)
                if problem is None:
                    return final, json.loads((final / MANIFEST).read_text())["metadata"]
                self.log(f"cache entry {final} is corrupt ({problem}); rebuilding it")
                shutil.rmtree(final)
            scratch = final.parent / f".scratch-{key}"
            scratch.mkdir(exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=final.parent))
            try:
                metadata = build(work, scratch)
                files = {str(p.relative_to(work)): sha256_file(p) for p in sorted(work.rglob("*")) if p.is_file()}
                manifest = {"key": key, "files": files, "metadata": metadata}
                (work / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
                os.replace(work, final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
            return final, metadata
        finally:
            lock.release()


def verify(folder: Path) -> str | None:
    """None when every file listed in the manifest is present with its recorded sha256."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError):
        return "missing or unreadable manifest"
    for name, digest in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != digest:
            return f"{name} does not match its sha256"
    return None
