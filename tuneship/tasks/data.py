"""Task: prepare the dataset split (validate, convert, split) before anything trains."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_table_artifact

from tuneship.config import PipelineConfig
from tuneship.data import PreparedData, prepare_dataset, summary_table
from tuneship.tasks._common import HUB_RETRY, artifact_key, get_logger, pipeline_task


def load_tokenizer(model_dir: str):  # type: ignore[no-untyped-def]
    """Load the base model's tokenizer (used to measure row lengths)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


@pipeline_task("prepare-dataset-split", HUB_RETRY, run_name="prepare-data-{config.name}")
def prepare_dataset_split(config: PipelineConfig, base_model_dir: str) -> PreparedData:
    """Read, validate, convert and split the data; publish a summary table artifact.

    Args:
        config: The run's configuration.
        base_model_dir: Local folder of the base model (its tokenizer measures lengths).

    Returns:
        Paths of the train/eval JSONL files, counts, fingerprint and the data report.
    """
    logger = get_logger()
    prepared = prepare_dataset(
        config.data,
        config.training.method,
        config.training.evaluates,
        Path(config.run_dir()) / "data",
        tokenizer=load_tokenizer(base_model_dir),
    )
    for warning in prepared.report.warnings:
        logger.warning("data: %s", warning)
    logger.info(
        "data: %d train / %d eval rows (%s), fingerprint %s",
        prepared.n_train,
        prepared.n_eval,
        prepared.eval_source,
        prepared.fingerprint[:12],
    )
    create_table_artifact(
        table=summary_table(prepared),
        key=artifact_key(config.name, "data-summary"),
        description=f"Dataset summary for {config.data.path}",
    )
    return prepared
