"""Find where ``data.path`` points and open it as named splits of rows.

A source is one of:

* a single data file (.jsonl, .jsonl.gz, .json, .parquet, .csv): one split;
* a ``datasets.save_to_disk`` folder (a Dataset is one split, a DatasetDict has its own);
* a folder of split files (``train.jsonl`` beside ``test.jsonl`` or ``validation.jsonl``);
* any other folder, or a Hub dataset id (``namespace/name``): read with
  ``datasets.load_dataset(id_or_folder, data.subset, split=...)``. A folder laid out like a
  Hub dataset repo (``data/train-*.parquet``, a README with ``configs:``) takes exactly the
  code path a real Hub id takes.

Files read by tuneship itself keep ``path:LINE`` locations; rows that come through
``datasets`` are located as ``source [split] row N``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneship.config import DataConfig
from tuneship.data.readers import DATA_SUFFIXES, data_suffix, read_file, records_to_rows, split_name
from tuneship.data.rows import Row
from tuneship.errors import DataError, TransientError
from tuneship.hub.ids import is_hub_id

DEMO_DATA = "tuneship-demo://sample"
"""Sentinel path for the sample chat data shipped with tuneship."""
ZORBLAX_DATA = "tuneship-demo://zorblax"
"""Shipped chat data that teaches SmolLM2 a made-up fact (what a zorblax is)."""

_SPLIT_STEM = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class DataSource:
    """An opened data source: its split names and a way to read one split.

    Attributes:
        description: What the source is, for messages (a path or ``Hub dataset 'id'``).
        splits: The split names it has.
        single: True when the source is a single table (one file or one Dataset), whose
            only split is named after ``data.split``.
        reader: Reads a split: ``reader(split, max_rows) -> rows``.
    """

    description: str
    splits: list[str]
    single: bool
    reader: Callable[[str, int | None], list[Row]]

    def read(self, split: str, max_rows: int | None = None) -> list[Row]:
        """Read the rows of ``split``, at most ``max_rows`` of them."""
        return self.reader(split, max_rows)


def resolve_path(path: str) -> str:
    """Turn a demo sentinel into a shipped data file; expand ``~`` in paths."""
    if path == DEMO_DATA:
        from tuneship.demo.tiny_model import sample_data_path

        return str(sample_data_path())
    if path == ZORBLAX_DATA:
        from tuneship.demo.smollm2 import zorblax_data_path

        return str(zorblax_data_path())
    return str(Path(path).expanduser()) if path.startswith("~") else path


def looks_like_hub_id(path: str) -> bool:
    """Whether ``path`` could be a Hub dataset id rather than a (missing) local file."""
    return is_hub_id(path, namespaced=True) and data_suffix(Path(path)) is None


def open_source(data: DataConfig) -> DataSource:
    """Open ``data.path`` as a :class:`DataSource`.

    Args:
        data: The data config (path, subset and split are used).

    Returns:
        The opened source; nothing but split names is read yet.

    Raises:
        DataError: The path does not exist and is not a Hub id, or it cannot be read.
        TransientError: The Hub could not be reached.
    """
    path = resolve_path(data.path)
    local = Path(path)
    if local.is_file():
        return DataSource(str(local), [data.split], True, lambda _split, n: read_file(local, n))
    if local.is_dir():
        return _open_folder(local, data)
    if looks_like_hub_id(path):
        return open_hub_dataset(path, data.subset)
    raise DataError(
        f"data.path: {data.path!r}: the file does not exist (and it is not a Hub dataset id "
        f"of the form 'namespace/name'). Give a {', '.join(DATA_SUFFIXES)} file, a folder, "
        "or a Hub dataset id."
    )


def _open_folder(folder: Path, data: DataConfig) -> DataSource:
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        return _open_saved(folder, data)
    split_files = _split_files(folder)
    if split_files and not _readme_declares_configs(folder):
        return DataSource(
            str(folder),
            sorted(split_files),
            False,
            lambda split, n: read_file(split_files[split], n),
        )
    if not _readme_declares_configs(folder) and not any(
        file.is_file() and data_suffix(file) is not None for file in folder.rglob("*")
    ):
        # datasets would otherwise read any stray text file in it as rows of text.
        raise DataError(
            f"data.path: {folder} is neither a datasets.save_to_disk folder nor a folder of "
            f"data files ({', '.join(DATA_SUFFIXES)}); give the data file itself or such a folder"
        )
    return open_hub_dataset(str(folder), data.subset)


def _split_files(folder: Path) -> dict[str, Path]:
    """Map split name to file for files like ``train.jsonl`` directly in ``folder``.

    Sharded names (``train-00000-of-00002.parquet``) are left to ``datasets``.
    """
    found: dict[str, Path] = {}
    for file in sorted(folder.iterdir()):
        if not file.is_file() or data_suffix(file) is None:
            continue
        name = split_name(file)
        if not _SPLIT_STEM.match(name):
            return {}
        if name in found:
            raise DataError(
                f"{folder}: split {name!r} is given twice ({found[name].name} and {file.name}); "
                "keep one file per split"
            )
        found[name] = file
    return found


def _readme_declares_configs(folder: Path) -> bool:
    readme = folder / "README.md"
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("---"):
        return False
    front = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    return bool(re.search(r"^configs\s*:", front, re.MULTILINE))


def _open_saved(folder: Path, data: DataConfig) -> DataSource:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"{folder}: not a readable datasets.save_to_disk folder: {exc}") from None
    if isinstance(loaded, datasets.DatasetDict):
        tables = dict(loaded)
        return DataSource(
            str(folder),
            list(tables),
            False,
            lambda split, n: _dataset_rows(tables[split], f"{folder} [{split}]", n),
        )
    return DataSource(
        str(folder), [data.split], True, lambda _split, n: _dataset_rows(loaded, str(folder), n)
    )


def _dataset_rows(dataset: Any, source: str, max_rows: int | None) -> list[Row]:
    if max_rows is not None and max_rows < len(dataset):
        dataset = dataset.select(range(max_rows))
    return records_to_rows(dataset.to_list(), source)


def open_hub_dataset(repo: str, subset: str | None) -> DataSource:
    """Open a Hub dataset id, or a local folder laid out like a Hub dataset repo.

    Split names come from ``datasets.get_dataset_split_names``; a split is read with
    ``datasets.load_dataset(repo, subset, split="name[:max_rows]")``, so only the splits
    actually used are loaded.

    Args:
        repo: ``namespace/name`` on the Hub, or a local folder.
        subset: The dataset configuration name (``data.subset``).

    Returns:
        The opened source.

    Raises:
        DataError: The dataset or subset does not exist, or cannot be loaded.
        TransientError: The Hub could not be reached (worth retrying).
    """
    import datasets

    label = repo if Path(repo).is_dir() else f"Hub dataset {repo!r}"
    names = _call_hub(label, lambda: datasets.get_dataset_split_names(repo, config_name=subset))

    def read(split: str, max_rows: int | None) -> list[Row]:
        spec = f"{split}[:{max_rows}]" if max_rows is not None else split
        dataset = _call_hub(label, lambda: datasets.load_dataset(repo, subset, split=spec))
        return records_to_rows(dataset.to_list(), f"{label} [{split}]")

    return DataSource(label, list(names), False, read)


def _call_hub(label: str, call: Callable[[], Any]) -> Any:
    """Run a ``datasets`` call, turning its failures into tuneship errors."""
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub import constants

    try:
        return call()
    except DatasetNotFoundError as exc:
        raise DataError(
            f"data.path: {label} does not exist (no such local file or folder, and the Hub "
            f"has no such dataset or it is gated/private): {exc}"
        ) from None
    except ConnectionError as exc:
        if constants.HF_HUB_OFFLINE:
            raise DataError(
                f"data.path: {label} is not a local file or folder, and HF_HUB_OFFLINE is set "
                f"so the Hub cannot be asked: {exc}"
            ) from None
        raise TransientError(f"data.path: could not reach the Hub for {label}: {exc}") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise DataError(f"data: cannot load {label}: {exc}") from None
