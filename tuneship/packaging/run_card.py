"""What a pipeline run tells the model card and the registry: labels, metrics, settings.

Plain functions of the run's config and results, so the flow only wires them together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneship import __version__
from tuneship.config import DEMO_BASE_MODEL, DEMO_PRETRAINED_BASE_MODEL, PipelineConfig
from tuneship.packaging import card_info
from tuneship.packaging.card import CardInfo, read_base_license

if TYPE_CHECKING:
    from tuneship.data import PreparedData
    from tuneship.publishing.base import PublishResult
    from tuneship.registry import ModelEntry
    from tuneship.training import TrainResult

DEMO_BASE_LABELS = {
    DEMO_BASE_MODEL: "tuneship demo tiny Llama",
    DEMO_PRETRAINED_BASE_MODEL: "tuneship demo tiny Llama (pre-trained on the demo data)",
}


def base_model_label(config: PipelineConfig) -> str:
    """Return how the card and registry name the base model (demo models get readable names)."""
    return DEMO_BASE_LABELS.get(config.model.base, config.model.base)


def eval_metrics(trained: TrainResult) -> dict[str, float]:
    """Return the eval losses a run measured (none when evaluation was off)."""
    found = {"base_eval_loss": trained.base_eval_loss, "eval_loss": trained.eval_loss}
    return {key: value for key, value in found.items() if value is not None}


def build_card_info(
    config: PipelineConfig, base_model_dir: str, trained: TrainResult, prepared: PreparedData
) -> CardInfo:
    """Return what the model card of a run says.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model (its README gives the license).
        trained: What the training job produced.
        prepared: The prepared split (its fingerprint identifies the data).

    Returns:
        The card's metadata (see :func:`tuneship.packaging.card_info.build_card_info`).
    """
    return card_info.build_card_info(
        config,
        trained,
        trainer_format=prepared.trainer_format,
        dataset_fingerprint=prepared.fingerprint,
        base_label=base_model_label(config),
        license=config.publish.license or read_base_license(base_model_dir),
        version=__version__,
    )


def build_model_entry(
    card: CardInfo, trained: TrainResult, published: PublishResult, flow_run_id: str | None
) -> ModelEntry:
    """Return the registry record of a published run: what the card says, and where it went.

    Args:
        card: The run's card metadata.
        trained: What the training job produced (its eval losses are the metrics).
        published: Where the package was published (its revision is the version).
        flow_run_id: The Prefect flow run, when the run is one.

    Returns:
        The model version to register.
    """
    from tuneship.registry import ModelEntry

    return ModelEntry(
        name=card.repo_id,
        version=published.revision,
        base_model=card.base_model,
        method=card.method,
        adapter=card.adapter,
        dataset_fingerprint=card.dataset_fingerprint,
        metrics=eval_metrics(trained),
        artifact_target=published.target,
        artifact_location=published.location,
        artifact_revision=published.revision,
        flow_run_id=flow_run_id,
    )
