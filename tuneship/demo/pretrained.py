"""The demo's pre-trained tiny base: the tiny Llama taught the sample data's train answers.

A LoRA adapter cannot do much on random weights (the tied embeddings and the final norm
stay random, so the loss plateaus whatever the rank), so the demo fine-tunes a base that
was first pre-trained, like any real base model, on plain sentences. Only the *train*
split of the demo's own data settings (``tuneship/demo/demo.yaml``) is used, for the
tokenizer and for pre-training: the demo's eval rows stay unseen, so its eval loss means
what it says. The model is built once and cached in a folder keyed by a hash of the recipe
and the data, so a changed recipe or a changed split builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneship.config import DataConfig, default_home, load_config
from tuneship.data.prepare import prepare_dataset
from tuneship.demo import demo_config_path
from tuneship.demo.tiny_model import build_tiny_model, pretrain_model, pretrain_texts

RECIPE_VERSION = 1
"""Bump when the build changes in a way the recipe fields do not show."""


@dataclass(frozen=True)
class PretrainRecipe:
    """How the pre-trained demo base is made (all of it goes into the cache key).

    Attributes:
        steps: Optimiser steps of pre-training (about 7 s for 400 on two CPU cores).
        seed: Seed of the initial weights and of the batch order.
        learning_rate: AdamW learning rate.
        batch_size: Sentences per step.
    """

    steps: int = 400
    seed: int = 0
    learning_rate: float = 2e-3
    batch_size: int = 16


@dataclass(frozen=True)
class PretrainCorpus:
    """What pre-training reads, taken from the train split only.

    Attributes:
        tokenizer_texts: Every message of the train rows (the tokenizer is trained on them).
        sentences: The train rows' distinct assistant answers (the model learns them).
    """

    tokenizer_texts: list[str]
    sentences: list[str]


def models_cache_dir() -> Path:
    """Return where built demo models are cached.

    ``$TUNESHIP_MODELS_CACHE`` when set (tests share one per session), else
    ``$TUNESHIP_HOME/models-cache``.
    """
    override = os.environ.get("TUNESHIP_MODELS_CACHE")
    return Path(override).expanduser() if override else default_home() / "models-cache"


def demo_data_config() -> DataConfig:
    """Return the ``data`` section of the shipped demo config (the source of the split)."""
    return load_config(demo_config_path()).data


def read_train_rows(data: DataConfig) -> list[dict[str, Any]]:
    """Return the train rows of ``data`` exactly as a run with an eval set would split them.

    The split is the pipeline's own (:func:`~tuneship.data.prepare.prepare_dataset` with an
    eval set), so the rows a demo run evaluates on are never among them.

    Args:
        data: The data section whose split to follow.

    Returns:
        The train rows in the trainer's format (``messages`` rows for chat data).
    """
    with tempfile.TemporaryDirectory(prefix="tuneship-pretrain-") as tmp:
        prepared = prepare_dataset(data, "sft", evaluate=True, out_dir=Path(tmp))
        lines = Path(prepared.train_path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def build_corpus(rows: list[dict[str, Any]]) -> PretrainCorpus:
    """Return the tokenizer texts and pre-training sentences of ``rows`` (train rows only).

    Args:
        rows: ``messages`` rows of the train split.

    Returns:
        The corpus.
    """
    texts = [m["content"] for row in rows for m in row.get("messages", []) if m.get("content")]
    return PretrainCorpus(tokenizer_texts=texts, sentences=pretrain_texts(rows))


def recipe_key(recipe: PretrainRecipe, corpus: PretrainCorpus) -> str:
    """Return the sha256 hex of the recipe and the corpus: the cache folder's key."""
    payload = json.dumps(
        {"version": RECIPE_VERSION, "recipe": asdict(recipe), "corpus": asdict(corpus)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def build_pretrained_model(
    out_dir: Path, corpus: PretrainCorpus, recipe: PretrainRecipe | None = None
) -> Path:
    """Build the tiny Llama with a tokenizer of ``corpus`` and pre-train it on its sentences.

    Args:
        out_dir: Folder to write the model into (created).
        corpus: Train-split texts.
        recipe: Pre-training settings (defaults: :class:`PretrainRecipe`).

    Returns:
        ``out_dir``.

    Raises:
        ValueError: The corpus has no sentences to learn.
    """
    recipe = recipe or PretrainRecipe()
    if not corpus.sentences:
        raise ValueError("the demo data's train split has no assistant answers to pre-train on")
    build_tiny_model(out_dir, seed=recipe.seed, texts=corpus.tokenizer_texts)
    pretrain_model(
        out_dir,
        corpus.sentences,
        steps=recipe.steps,
        seed=recipe.seed,
        learning_rate=recipe.learning_rate,
        batch_size=recipe.batch_size,
    )
    return out_dir


def ensure_pretrained_demo_model(recipe: PretrainRecipe | None = None) -> Path:
    """Return the cached pre-trained demo base, building it first when it is not there.

    Args:
        recipe: Pre-training settings (defaults: :class:`PretrainRecipe`).

    Returns:
        The model folder, ``<models cache>/tiny-llama-pretrained-<key>``.
    """
    recipe = recipe or PretrainRecipe()
    corpus = build_corpus(read_train_rows(demo_data_config()))
    path = models_cache_dir() / f"tiny-llama-pretrained-{recipe_key(recipe, corpus)[:16]}"
    if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
        return path
    # Built beside its final name and renamed when complete: an interrupted build never
    # looks like a finished model, and two concurrent builds do not write into one folder.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build_pretrained_model(tmp, corpus, recipe)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
