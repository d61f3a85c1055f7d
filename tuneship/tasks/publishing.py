"""Tasks: package the merged model, publish it, and register it."""

from __future__ import annotations

from pathlib import Path

from prefect.artifacts import create_markdown_artifact

from tuneship.config import PipelineConfig
from tuneship.errors import ConfigError
from tuneship.packaging import CardInfo, PackageResult, package_model
from tuneship.publishing.base import Publisher, PublishResult
from tuneship.registry import ModelEntry, Registry
from tuneship.tasks._common import (
    HUB_RETRY,
    REGISTRY_RETRY,
    artifact_key,
    get_logger,
    pipeline_task,
)


@pipeline_task("package-model", run_name="package-{card.repo_id}")
def package_merged_model(
    merged_dir: str, out_dir: str, card: CardInfo, load_check: bool = True
) -> PackageResult:
    """Write the model card and .gitattributes, then verify the folder loads.

    Args:
        merged_dir: The merged model folder.
        out_dir: Where the packaged folder goes.
        card: What the model card says.
        load_check: Also load the weights and generate one token before publishing.

    Returns:
        The packaged folder and its files.
    """
    result = package_model(Path(merged_dir), Path(out_dir), card, load_check=load_check)
    get_logger().info(
        "package: %s (%d files, %d bytes)", result.path, len(result.files), result.total_bytes
    )
    return result


def build_publisher(config: PipelineConfig) -> Publisher:
    """Return the publisher ``publish.target`` names (local store or Hub)."""
    if config.publish.target == "hub":
        from tuneship.blocks.credentials import resolve_hf_token
        from tuneship.publishing.hub import HubPublisher

        token = resolve_hf_token(config.publish.hf_credentials_block)
        if token is None:
            raise ConfigError(
                "publish.target=hub needs a token: set publish.hf_credentials_block to a "
                "HuggingFaceCredentials block name, or HF_TOKEN for local use"
            )
        return HubPublisher(
            token=token,
            endpoint=config.publish.hub_endpoint,
            private=config.publish.private,
            branch=config.publish.branch,
            tags=tuple(config.publish.tags),
        )
    from tuneship.publishing.local_store import LocalStorePublisher

    return LocalStorePublisher(config.store_dir())


def describe_published_model(result: PublishResult) -> tuple[str, str]:
    """The published-model artifact: Markdown (a link for the Hub) and its description.

    A local store's ``file://`` URL is no link a browser follows from the Prefect UI, so a
    local publish shows the folder as text to copy instead.

    Args:
        result: Where the publish put the model.

    Returns:
        ``(markdown, description)``.
    """
    revision = result.revision[:12]
    if result.url and result.url.startswith(("https://", "http://")):
        return (
            f"[{result.repo_id}@{revision}]({result.url})",
            f"The published model on the Hub: {result.repo_id} at revision {revision} "
            "(what the registry and deployments point at)",
        )
    return (
        f"Published `{result.repo_id}` revision `{result.revision}` to `{result.location}`",
        f"The published model in the local store: {result.repo_id} at revision {revision} "
        "(a folder laid out like the Hub; what the registry and deployments point at)",
    )


@pipeline_task(
    "publish-model", HUB_RETRY, run_name="publish-{config.publish.target}-{config.publish.repo_id}"
)
def publish_model(config: PipelineConfig, folder: str, run_label: str) -> PublishResult:
    """Publish the packaged folder to the local store or the Hub.

    Args:
        config: The run's configuration (``publish`` section).
        folder: The packaged folder.
        run_label: Names the run in the commit message.

    Returns:
        Where the model went, with its revision.
    """
    publisher = build_publisher(config)
    result = publisher.publish(
        Path(folder), config.publish.repo_id, commit_message=f"tuneship: {run_label}"
    )
    get_logger().info(
        "publish: %s %s@%s%s",
        result.target,
        result.repo_id,
        result.revision[:12],
        "" if result.created_new_revision else " (unchanged; nothing new written)",
    )
    markdown, description = describe_published_model(result)
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key(config.name, "published-model"),
        description=description,
    )
    return result


@pipeline_task(
    "register-model", REGISTRY_RETRY, run_name="register-{entry.name}-{entry.version:.12}"
)
def register_model(registry_url: str, entry: ModelEntry) -> ModelEntry:
    """Upsert the model into the registry (running twice creates no duplicate).

    Args:
        registry_url: SQLAlchemy URL of the registry.
        entry: What to record.

    Returns:
        The stored entry.
    """
    stored = Registry(registry_url).upsert_model(entry)
    get_logger().info("registry: %s version %s", stored.name, stored.version)
    return stored
