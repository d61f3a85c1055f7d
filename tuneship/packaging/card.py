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


class CardResult(BaseModel):
    """One evaluation result of the fine-tuned model, as the card's model-index lists it."""

    type: str = Field(description="model-index metric type, e.g. loss or accuracy.")
    name: str = Field(description="What was measured, e.g. 'Eval loss on assistant tokens'.")
    value: float


class CardInfo(BaseModel):
    """What the model card says about a fine-tuned model."""

    repo_id: str = Field(description="namespace/name the model is published as.")
    base_model: str = Field(description="Hub id or folder of the model that was fine-tuned.")
    method: str = Field(description="Training method: sft, dpo or orpo.")
    adapter: str = Field(description="lora, qlora or full.")
    datasets: list[str] = Field(
        default_factory=list,
        description="Hub dataset ids the training data came from (empty for local data).",
    )
    license: str | None = Field(
        default=None, description="License id (e.g. apache-2.0); None if unknown."
    )
    results: list[CardResult] = Field(
        default_factory=list, description="This model's eval results (the model-index)."
    )
    eval_loss_name: str = Field(
        "eval loss", description="What the eval loss measures, e.g. 'loss on assistant tokens'."
    )
    base_eval_loss: float | None = Field(
        default=None, description="The base model's eval loss on the same set (card text only)."
    )
    eval_loss: float | None = Field(default=None, description="This model's eval loss.")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="The training settings that applied."
    )
    dataset_fingerprint: str | None = Field(
        default=None, description="SHA-256 of the training data (card text only)."
    )
    store_repo_dir: str | None = Field(
        default=None,
        description="The local model store folder of the repo when published locally; the "
        "usage snippet then loads the current revision from there instead of the Hub.",
    )
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
    # The Hub reads dataset.type/name as a Hub dataset id: local data gets a placeholder,
    # never a file name or the data's hash.
    dataset = next((d for d in info.datasets if is_hub_id(d)), None)
    return [
        EvalResult(
            task_type="text-generation",
            task_name="Text Generation",
            dataset_type=dataset or "custom",
            dataset_name=dataset or "custom data (held-out eval split)",
            metric_type=result.type,
            metric_name=result.name,
            metric_value=float(result.value),
        )
        for result in info.results
    ]


def _evaluation(info: CardInfo) -> str:
    if not info.results and info.eval_loss is None:
        return "No evaluation was run."
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {r.name} | {r.value:.4f} |" for r in info.results]
    if info.base_eval_loss is not None and info.eval_loss is not None:
        better = "lower (better)" if info.eval_loss < info.base_eval_loss else "not lower"
        rows += [
            "",
            f"On the same eval set the base model's {info.eval_loss_name} is "
            f"{info.base_eval_loss:.4f}; this model's is {info.eval_loss:.4f}, {better}.",
        ]
    return "\n".join(rows)


def _load_snippets(info: CardInfo, name: str) -> tuple[str, str]:
    """Python lines that set ``model_id``, and the model argument of ``vllm serve``."""
    if info.store_repo_dir is None:
        return f'model_id = "{info.repo_id}"', info.repo_id
    repo = info.store_repo_dir
    python = (
        "from pathlib import Path\n\n"
        f"# Published to the local model store: load its current revision.\n"
        f'repo = Path("{repo}")\n'
        'model_id = str(repo / "revisions" / (repo / "refs" / "main").read_text().strip())'
    )
    return python, f'"{repo}/revisions/$(cat {repo}/refs/main)"'


def _body(info: CardInfo) -> str:
    name = info.repo_id.split("/")[-1]
    hyper = json.dumps(redact_secrets(info.hyperparameters), indent=2, sort_keys=True, default=str)
    datasets = ", ".join(f"`{d}`" for d in info.datasets if is_hub_id(d))
    datasets = datasets or "local data (not on the Hub)"
    load_python, load_vllm = _load_snippets(info, name)
    base = _display_name(info.base_model)
    base_ref = f"[`{base}`](https://huggingface.co/{base})" if is_hub_id(base) else f"`{base}`"
    return f"""
# {name}

A fine-tune of {base_ref} with {info.method.upper()}
({info.adapter}), built and published by tuneship.

## Use with transformers

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

{load_python}
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
vllm serve {load_vllm} --served-model-name {name}
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
- Data fingerprint (SHA-256 of the train/eval split): `{info.dataset_fingerprint or "not recorded"}`
- tuneship version: {info.tuneship_version}

Hyperparameters:

```json
{hyper}
```

## Evaluation

{_evaluation(info)}
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
