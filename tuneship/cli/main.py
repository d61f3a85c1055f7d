"""The ``tuneship`` command: run, validate, demo, config, and the sub-commands of each area."""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from tuneship.errors import TuneshipError

app = typer.Typer(
    name="tuneship",
    help="Fine-tune, merge, package, publish, serve and register LLMs as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the configuration format.", no_args_is_help=True)
app.add_typer(config_app, name="config")

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config value: KEY.PATH=VALUE (repeatable)."),
]

# Sub-apps live beside the code they drive; each is mounted when its module is present.
_SUBAPPS = {
    "models": ("tuneship.cli.models", "models_app", "List and show registered models."),
    "plan": ("tuneship.cli.plan", "plan_app", "Plan GPUs, TP and memory before paying."),
    "blocks": ("tuneship.cli.blocks", "blocks_app", "Register and create credential blocks."),
    "deployments": (
        "tuneship.cli.deployments",
        "deployments_app",
        "List and stop model deployments.",
    ),
    "runpod": ("tuneship.cli.runpod", "runpod_app", "RunPod housekeeping: the janitor."),
}
for _name, (_module, _attr, _help) in _SUBAPPS.items():
    try:
        _sub = getattr(importlib.import_module(_module), _attr)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
        continue
    app.add_typer(_sub, name=_name, help=_help)


_debug = False


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks of errors (for bug reports).")
    ] = False,
) -> None:
    global _debug
    _debug = debug


def _fail(exc: BaseException) -> typer.Exit:
    if _debug:
        import traceback

        traceback.print_exception(exc)
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _interrupted(exc: BaseException) -> typer.Exit:
    from tuneship.cli.shutdown import exit_code_for, signal_of

    typer.secho(
        f"interrupted by {signal_of(exc).name}; the processes the run started were stopped",
        fg=typer.colors.RED,
        err=True,
    )
    return typer.Exit(code=exit_code_for(exc))


def _quiet_env() -> None:
    # Progress comes from Prefect's task logs; library progress bars would drown it.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


@config_app.command("schema")
def config_schema(
    output: Annotated[Path | None, typer.Option(help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of the pipeline configuration."""
    from tuneship.config import config_json_schema

    text = json.dumps(config_json_schema(), indent=2)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
    else:
        typer.echo(text)


@config_app.command("show")
def config_show(
    config: Annotated[Path | None, typer.Argument(help="YAML config file.")] = None,
    set_: SetOption = None,
) -> None:
    """Print the full configuration (defaults filled in) as YAML."""
    import yaml

    from tuneship.config import load_config

    try:
        cfg = load_config(config, set_ or [])
    except TuneshipError as exc:
        raise _fail(exc) from None
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


@app.command("validate")
def validate(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: SetOption = None,
) -> None:
    """Check config, data, credentials and training settings; train nothing."""
    _quiet_env()
    from tuneship.config import load_config
    from tuneship.tasks.credentials import load_run_secrets
    from tuneship.validation import ValidationFailedError, validate_run

    try:
        cfg = load_config(config, set_ or [])
        results = validate_run(cfg, load_run_secrets(cfg))
    except ValidationFailedError as exc:
        for result in exc.passed:  # what could be checked, e.g. the GPU and the cost
            typer.echo(f"ok  {result.name:<10} {result.detail}")
        raise _fail(exc) from None
    except TuneshipError as exc:
        raise _fail(exc) from None
    for result in results:
        typer.echo(f"ok  {result.name:<10} {result.detail}")
    typer.secho("all checks passed; nothing was started", fg=typer.colors.GREEN)


def _run_flow(config_path: Path | None, overrides: list[str]) -> None:
    _quiet_env()
    from tuneship.config import load_config

    try:
        cfg = load_config(config_path, overrides)
    except TuneshipError as exc:
        raise _fail(exc) from None

    from tuneship.cli.progress import show_training_progress
    from tuneship.cli.shutdown import ephemeral_prefect_api
    from tuneship.flows.finetune import finetune_and_deploy, render_summary

    if not _debug:
        from tuneship.cli.failures import hide_user_error_tracebacks

        hide_user_error_tracebacks()
    from prefect.exceptions import TerminationSignal

    try:
        with ephemeral_prefect_api(), show_training_progress():
            summary = finetune_and_deploy(cfg)
    except TuneshipError as exc:
        raise _fail(exc) from None
    except (KeyboardInterrupt, TerminationSignal) as exc:
        # Caught here: typer turns an escaping KeyboardInterrupt into a silent exit 130.
        raise _interrupted(exc) from None
    typer.echo("")
    typer.secho("run finished", fg=typer.colors.GREEN, bold=True)
    if summary.base_eval_loss is not None and summary.eval_loss is not None:
        typer.echo(
            f"eval loss before training: {summary.base_eval_loss:.4f}\n"
            f"eval loss after training:  {summary.eval_loss:.4f}"
        )
    if summary.merge_check:
        typer.echo(f"merge check: {summary.merge_check}")
    typer.echo(f"model folder: {summary.published.location}")
    typer.echo(render_summary(summary))
    dep = summary.deployment
    if dep is not None:
        typer.echo(f"endpoint: {dep.url}  (model {dep.served_model_name!r})")
        if dep.question:
            typer.echo(f"question: {dep.question}")
            if summary.base_answer:
                typer.echo(f"before training (base model, transformers): {summary.base_answer}")
            typer.echo(f"answer:   {dep.answer}")
            if dep.reference_answer:
                typer.echo(f"transformers on the same folder: {dep.reference_answer}")
        if dep.kept_running:
            typer.echo(
                f"the server keeps running; API key in {dep.api_key_file}; stop it with: "
                f"tuneship deployments stop {dep.name}"
            )
        else:
            typer.echo("the server was stopped (use --keep-serving to leave it running)")
    from tuneship.registry import Registry

    entry = Registry(summary.registry_url).get_model(summary.model_name, summary.model_version)
    typer.echo("registry entry:")
    typer.echo(json.dumps(entry.model_dump(mode="json") if entry else None, indent=2))


@app.command("run")
def run(
    config: Annotated[Path, typer.Argument(help="YAML config file.")],
    set_: SetOption = None,
) -> None:
    """Run the whole pipeline for CONFIG through Prefect."""
    _run_flow(config, set_ or [])


@app.command("demo")
def demo(
    set_: SetOption = None,
    keep_serving: Annotated[
        bool, typer.Option("--keep-serving", help="Leave the vLLM server running at the end.")
    ] = False,
) -> None:
    """Fine-tune a tiny model on sample data, serve it with vLLM and ask it a question.

    Runs on this machine with no account and no GPU.
    """
    from tuneship.demo import demo_config_path

    overrides = list(set_ or [])
    if keep_serving:
        overrides.append("serve.keep_serving=true")
    _run_flow(demo_config_path(), overrides)


def main() -> None:
    """Entry point of the ``tuneship`` console script.

    SIGTERM and SIGHUP unwind like Ctrl-C, so every process the run started (Prefect's
    temporary API, a vLLM server) is stopped and the flow run ends in a final state.
    """
    from tuneship.cli.shutdown import exit_code_for, signals_raise

    try:
        with signals_raise():
            app()
    except KeyboardInterrupt as exc:  # outside a command (typer handles those)
        sys.exit(exit_code_for(exc))
