"""Turn a merged model folder into a publishable package: files, model card, LFS rules.

The package is built in a temporary sibling folder, verified there, and only then moved
to ``out_dir``; a failed run leaves any earlier package untouched, and re-running with
the same inputs gives the same folder.
"""

from __future__ import annotations

import fnmatch
import shutil
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

from tuneship.errors import PackagingError
from tuneship.packaging.card import CardInfo, build_model_card
from tuneship.packaging.verify import ModelFolderError, VerifyReport, verify_model_folder

# The Hub's default .gitattributes for a new model repo (huggingface_hub creates repos
# with these rules), plus tokenizer.json, which the Hub stores in LFS once it is large.
HUB_LFS_PATTERNS = (
    "*.7z",
    "*.arrow",
    "*.bin",
    "*.bz2",
    "*.ckpt",
    "*.ftz",
    "*.gguf",
    "*.gz",
    "*.h5",
    "*.joblib",
    "*.lfs.*",
    "*.mlmodel",
    "*.model",
    "*.msgpack",
    "*.npy",
    "*.npz",
    "*.onnx",
    "*.ot",
    "*.parquet",
    "*.pb",
    "*.pickle",
    "*.pkl",
    "*.pt",
    "*.pth",
    "*.rar",
    "*.safetensors",
    "saved_model/**/*",
    "*.tar.*",
    "*.tar",
    "*.tflite",
    "*.tgz",
    "*.wasm",
    "*.xz",
    "*.zip",
    "*.zst",
    "*tfevents*",
    "tokenizer.json",
)
LFS_THRESHOLD_BYTES = 10 * 1024 * 1024
"""Files at least this big go to LFS whatever their name (the Hub's 10 MB rule)."""

# Training leftovers that must not ship: optimizer state is useless to users, and an
# adapter_config.json next to merged weights makes transformers load the folder as PEFT.
EXCLUDED_PATTERNS = (
    "README.md",
    ".gitattributes",
    ".git",
    ".cache",
    "checkpoint-*",
    "runs",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state*.pth",
    "training_args.bin",
    "trainer_state.json",
    "adapter_config.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)


class PackageResult(BaseModel):
    """Where the package is and what it holds (small: fit for a task result)."""

    path: str = Field(description="The package folder.")
    files: list[str] = Field(description="Relative paths of every file, sorted.")
    total_bytes: int = Field(description="Sum of the file sizes.")
    loaded: bool = Field(default=False, description="Whether verification loaded the model.")


def _lfs_line(pattern: str) -> str:
    return f"{pattern} filter=lfs diff=lfs merge=lfs -text"


def build_gitattributes(folder: Path) -> str:
    """Return the .gitattributes text for ``folder``: Hub defaults plus any big file.

    Args:
        folder: The package folder (scanned for files over the LFS threshold).

    Returns:
        The file's text.
    """
    lines = [_lfs_line(p) for p in HUB_LFS_PATTERNS]
    for file in sorted(folder.rglob("*")):
        if not file.is_file():
            continue
        rel = file.relative_to(folder).as_posix()
        covered = any(
            fnmatch.fnmatch(file.name, p) or fnmatch.fnmatch(rel, p) for p in HUB_LFS_PATTERNS
        )
        if not covered and file.stat().st_size >= LFS_THRESHOLD_BYTES:
            lines.append(_lfs_line(rel.replace(" ", "[[:space:]]")))
    return "\n".join(lines) + "\n"


def list_files(folder: Path) -> list[str]:
    """Return the relative POSIX paths of all files under ``folder``, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if any(fnmatch.fnmatch(n, p) for p in EXCLUDED_PATTERNS)}


def package_model(
    merged_dir: str | Path,
    out_dir: str | Path,
    card_info: CardInfo,
    *,
    load_check: bool = True,
) -> PackageResult:
    """Copy a merged model into ``out_dir`` with a model card and .gitattributes, then verify.

    Args:
        merged_dir: The merged (full-weight) model folder.
        out_dir: Where the package goes; an existing package there is replaced only once
            the new one has passed verification.
        card_info: What the model card says.
        load_check: Also load the packaged model and generate a token.

    Returns:
        The package's path, files and size.

    Raises:
        PackagingError: ``merged_dir`` is missing, or the package fails verification
            (the message lists every problem).
    """
    source = Path(merged_dir).resolve()
    target = Path(out_dir).resolve()
    if not source.is_dir():
        raise PackagingError(f"merged model folder not found: {source}")
    if target == source or source in target.parents:
        raise PackagingError(f"package folder {target} must be outside the merged folder {source}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        shutil.copytree(source, staging, ignore=_ignore)
        build_model_card(card_info).save(staging / "README.md")
        (staging / ".gitattributes").write_text(build_gitattributes(staging), encoding="utf-8")
        try:
            report: VerifyReport = verify_model_folder(staging, load_weights=load_check)
        except ModelFolderError as exc:
            # Name the folder the user has, not the staging copy that is about to vanish.
            raise ModelFolderError(source, exc.problems) from None
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    files = list_files(target)
    return PackageResult(
        path=str(target),
        files=files,
        total_bytes=sum((target / f).stat().st_size for f in files),
        loaded=report.loaded,
    )
