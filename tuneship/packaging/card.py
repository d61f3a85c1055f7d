"""The model card (README.md) of a packaged model: Hub YAML metadata plus a usage body.

The metadata follows the Hub's model card spec (``base_model``, ``license``,
``datasets``, ``tags`` and a ``model-index`` with eval results) so the Hub links the
model to its base and shows the scores. The body shows how to run the model with
transformers (chat template + generate) and vLLM, and what training produced it.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from pydantic import BaseModel, Field

from tuneship.errors import PackagingError
from tuneship.hub.ids import is_hub_id

_SECRET_KEY = re.compile(r"token|secret|password|passwd|api[_-]?key|credential|auth", re.I)
# Values that look like credentials even under an innocent key: HF, OpenAI-style, AWS keys.
_SECRET_VALUE = re.compile(r"\b(hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16})\b")
REDACTED = "<redacted>"


def tuneship_version() -> str:
    """Return the installed tuneship version (``0+unknown`` when not installed)."""
    try:
        return metadata.version("tuneship")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class CardInfo(BaseModel):
    """What the model card says about a fine-tuned model."""

    repo_id: str = Field(description="namespace/name the model is published as.")
    base_model: str = Field(description="Hub id or folder of the model that was fine-tuned.")
    method: str = Field(description="Training method: sft, dpo or orpo.")
    adapter: str = Field(description="lora, qlora or full.")
    datasets: list[str] = Field(default_factory=list, description="Dataset ids or file names.")
    license: str | None = Field(
        default=None, description="License id (e.g. apache-2.0); None if unknown."
    )
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Eval metrics, e.g. base_eval_loss and eval_loss."
    )
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Training settings shown in the card."
    )
    dataset_fingerprint: str | None = Field(default=None, description="Hash of the training data.")
    tuneship_version: str = Field(default_factory=tuneship_version)


def redact_secrets(value: Any) -> Any:
    """Return ``value`` with anything that looks like a credential replaced.

    Keys named like tokens, passwords or API keys are redacted whatever their value, and
    string values that look like HF/OpenAI/AWS keys are redacted under any key, so a
    hyperparameter dict taken from a config can never leak a secret into a public card.

    Args:
        value: A JSON-like value (dicts, lists, scalars).

    Returns:
        A redacted copy.
    """
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_secrets(v) for v in value]
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    return value


def read_base_license(base_model_path_or_id: str | Path) -> str | None:
    """Read the license from a base model's README.md metadata, when it is known locally.

    Looks in ``<folder>/README.md`` for a local folder, else in the Hugging Face cache
    for a Hub id (never the network).

    Args:
        base_model_path_or_id: A model folder or a Hub model id.

    Returns:
        The license id (e.g. ``apache-2.0``), or None when unknown.
    """
    readme: Path | None = None
    folder = Path(str(base_model_path_or_id)).expanduser()
    if folder.is_dir():
        readme = folder / "README.md"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(str(base_model_path_or_id), "README.md")
        except ValueError:  # not a valid repo id
            return None
        readme = Path(cached) if isinstance(cached, str) else None
    if readme is None or not readme.is_file():
        return None
    try:
        card = ModelCard.load(readme, ignore_metadata_errors=True)
    except (ValueError, OSError):
        return None
    lic = card.data.to_dict().get("license")
    if isinstance(lic, list):
        lic = lic[0] if lic else None
    return str(lic) if lic else None


def _display_name(name: str) -> str:
    """A dataset or model name for the card: Hub ids as is, local paths by file name only."""
    return name if is_hub_id(name) else Path(name.rstrip("/")).name or name


def _model_index(info: CardInfo) -> list[EvalResult]:
    dataset = _display_name(info.datasets[0]) if info.datasets else "custom"
    return [
        EvalResult(
            task_type="text-generation",
            task_name="Text Generation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="eval",
            dataset_revision=info.dataset_fingerprint,
            metric_type="loss" if "loss" in name else name,
            metric_name=name,
            metric_value=float(value),
        )
        for name, value in sorted(info.metrics.items())
    ]


def _metrics_table(metrics: dict[str, float]) -> str:
    if not metrics:
        return "No evaluation was run."
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items())]
    base, tuned = metrics.get("base_eval_loss"), metrics.get("eval_loss")
    if base is not None and tuned is not None:
        verdict = "lower (better)" if tuned < base else "not lower"
        rows.append("")
        rows.append(f"Eval loss after fine-tuning is {verdict} than the base model's.")
    return "\n".join(rows)


def _body(info: CardInfo) -> str:
    name = info.repo_id.split("/")[-1]
    hyper = json.dumps(redact_secrets(info.hyperparameters), indent=2, sort_keys=True, default=str)
    datasets = ", ".join(f"`{_display_name(d)}`" for d in info.datasets) or "not recorded"
    base = _display_name(info.base_model)
    base_ref = f"[`{base}`](https://huggingface.co/{base})" if is_hub_id(base) else f"`{base}`"
    return f"""
# {name}

A fine-tune of {base_ref} with {info.method.upper()}
({info.adapter}), built and published by tuneship.

## Use with transformers

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

model_id = "{info.repo_id}"
tokenizer = AutoTokenizer.from_pretrained(model_id)
model = AutoModelForCausalLM.from_pretrained(model_id, dtype="auto", device_map="auto")

messages = [{{"role": "user", "content": "Hello! What can you do?"}}]
inputs = tokenizer.apply_chat_template(
    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
).to(model.device)
output = model.generate(**inputs, max_new_tokens=128)
print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

## Serve with vLLM

```bash
vllm serve {info.repo_id} --served-model-name {name}
```

```python
from openai import OpenAI

client = OpenAI(base_url="http://localhost:8000/v1", api_key="EMPTY")
reply = client.chat.completions.create(
    model="{name}", messages=[{{"role": "user", "content": "Hello!"}}]
)
print(reply.choices[0].message.content)
```

## Training

- Base model: `{base}`
- Method: {info.method} with {info.adapter}
- Datasets: {datasets}
- Dataset fingerprint: `{info.dataset_fingerprint or "not recorded"}`
- tuneship version: {info.tuneship_version}

Hyperparameters:

```json
{hyper}
```

## Evaluation

{_metrics_table(info.metrics)}
"""


def build_model_card(info: CardInfo) -> ModelCard:
    """Build the model card of a fine-tuned model.

    Args:
        info: What to say about the model.

    Returns:
        A card whose ``str()`` is the README.md text (YAML front matter plus body).

    Raises:
        PackagingError: The metadata does not validate against the Hub's card schema.
    """
    tags = ["tuneship", info.method, info.adapter]
    # The Hub rejects a README whose base_model/datasets are not repo ids, and a local path
    # would leak the user's file system layout into a public card.
    hub_datasets = [d for d in info.datasets if is_hub_id(d)]
    data = ModelCardData(
        base_model=info.base_model if is_hub_id(info.base_model) else None,
        library_name="transformers",
        pipeline_tag="text-generation",
        license=info.license,
        datasets=hub_datasets or None,
        tags=list(dict.fromkeys(tags)),
        model_name=info.repo_id.split("/")[-1],
        eval_results=_model_index(info) or None,
    )
    content = f"---\n{data.to_yaml()}\n---\n{_body(info)}"
    try:
        return ModelCard(content)
    except ValueError as exc:
        raise PackagingError(f"model card for {info.repo_id} is invalid: {exc}") from None
