"""Weight sizes as stored: safetensors index and headers, the Hub's metadata, or the config.

In order of preference: the safetensors index's ``total_size``, the safetensors file
headers, or a parameter count from the config at the declared (or quantised) width.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from tuneship.errors import PlanningError, TransientError
from tuneship.planning.model_config import QuantFacts
from tuneship.planning.parameters import ParamBreakdown


def weight_bytes_from_config(
    breakdown: ParamBreakdown, dtype_bytes: float, quant: QuantFacts | None
) -> int:
    """Bytes of the weights as a checkpoint would store them.

    Unquantised: every parameter at the declared dtype. fp8 (DeepSeek style): decoder
    Linear weights at 1 byte plus one fp32 scale per weight block; everything else 16-bit.
    MXFP4 (gpt-oss): routed-expert weights at 4.25 bits, the rest 16-bit. AWQ/GPTQ and
    similar: Linear weights at ``bits`` plus a 16-bit scale and a packed zero point per
    group; embeddings and lm_head stay 16-bit.
    """
    if quant is None:
        return int(breakdown.total * dtype_bytes)
    half = 2.0  # the non-quantised parts of quantised checkpoints are 16-bit
    if quant.method in ("fp8", "fbgemm_fp8"):
        per_weight = 1.0
        if quant.weight_block_size:
            per_weight += 4.0 / (quant.weight_block_size[0] * quant.weight_block_size[1])
        rest = breakdown.total - breakdown.linear
        return int(breakdown.linear * per_weight + rest * half)
    if quant.method == "mxfp4":
        quantised = breakdown.expert_linear
        return int(quantised * quant.bits / 8 + (breakdown.total - quantised) * half)
    group = quant.group_size or 128
    per_weight = quant.bits / 8 + 2.0 / group + quant.bits / 8 / group
    return int(breakdown.linear * per_weight + (breakdown.total - breakdown.linear) * half)


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """Read a safetensors file's JSON header (8-byte little-endian length, then JSON)."""
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise PlanningError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 1024**2:
            raise PlanningError(f"{path}: safetensors header of {length} bytes is not plausible")
        header = json.loads(fh.read(length))
    if not isinstance(header, dict):
        raise PlanningError(f"{path}: safetensors header is not a JSON object")
    return header


def safetensors_payload_bytes(header: dict[str, Any]) -> int:
    """Sum of the tensor byte ranges in a safetensors header."""
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        start, end = info["data_offsets"]
        total += int(end) - int(start)
    return total


def weight_files(folder: Path) -> list[Path]:
    """Safetensors files holding the model (``model*`` when present, e.g. not consolidated)."""
    files = sorted(folder.glob("*.safetensors"))
    preferred = [f for f in files if f.name.startswith("model")]
    return preferred or files


def weight_bytes_from_folder(folder: Path) -> tuple[int, str] | None:
    """``(bytes, source)`` of a local checkpoint's safetensors, or None when it has none."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            data = json.loads(index.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PlanningError(f"{index}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        total = (data.get("metadata") or {}).get("total_size")
        if total:
            return int(total), "safetensors index total_size"
        shards = sorted({folder / s for s in (data.get("weight_map") or {}).values()})
        if shards and all(s.is_file() for s in shards):
            size = sum(safetensors_payload_bytes(read_safetensors_header(s)) for s in shards)
            return size, "safetensors headers"
    files = weight_files(folder)
    if files:
        size = sum(safetensors_payload_bytes(read_safetensors_header(f)) for f in files)
        return size, "safetensors headers"
    return None


def weight_bytes_from_hub(
    repo_id: str, revision: str | None, token: str | None
) -> tuple[int, str] | None:
    """Bytes of a Hub checkpoint's weights from its index or safetensors headers.

    Returns:
        ``(bytes, source)``, or None when the repo has no safetensors (sizes then come from
        the config).

    Raises:
        TransientError: The Hub could not be reached.
    """
    from huggingface_hub import get_safetensors_metadata, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        NotASafetensorsRepoError,
        OfflineModeIsEnabled,
    )

    weight: tuple[int, str] | None = None
    try:
        index_path = hf_hub_download(
            repo_id, "model.safetensors.index.json", revision=revision, token=token
        )
        total = (json.loads(Path(index_path).read_text("utf-8")).get("metadata") or {}).get(
            "total_size"
        )
        if total:
            weight = (int(total), "safetensors index total_size")
    except (EntryNotFoundError, OfflineModeIsEnabled, json.JSONDecodeError):
        weight = None  # no index (single-file or non-safetensors repo)
    except HfHubHTTPError as exc:
        raise TransientError(f"reading {repo_id}'s safetensors index failed: {exc}") from None
    if weight is None:
        try:
            meta = get_safetensors_metadata(repo_id, revision=revision, token=token)
            size = 0
            for file_meta in meta.files_metadata.values():
                for tensor in file_meta.tensors.values():
                    start, end = tensor.data_offsets
                    size += end - start
            if size:
                weight = (size, "safetensors headers")
        except (NotASafetensorsRepoError, EntryNotFoundError, OfflineModeIsEnabled):
            weight = None  # sizes come from the config instead
        except HfHubHTTPError as exc:
            raise TransientError(f"reading {repo_id}'s safetensors headers failed: {exc}") from None
    return weight
