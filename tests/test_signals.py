"""Fault matrix: a signal at each stage of a real ``tuneship run`` leaves nothing behind.

For each stage (data, training, merge, vLLM load check, publish, registration, serve
start-up, smoke test) and signal, the CLI runs as a real subprocess on the tiny model with its own
temporary Prefect API; when the stage starts it gets the signal (SIGTERM as from ``kill``,
SIGINT as a terminal's Ctrl-C, sent to the whole process group). Then no process of the
run and no port it listened on is left, every flow run is in a final state, the registry
and model store hold only complete entries, and a server stopped this way is recorded
``stopped``. The cases of one signal share ``TUNESHIP_HOME`` and ``PREFECT_HOME`` as a
user's machine would, so the last test of each signal checks that the next run with the
same config succeeds on top of everything the killed runs left.

Each case uses the smallest config that reaches its stage (one training step, no eval,
vLLM only where the stage needs it).

The registration case kills the run after the model store moved and before the registry
recorded the model: the next run of that signal must say that an earlier publish was
killed before it was registered, and clear that record once it has published.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from _fault_matrix import (
    FINAL_STATES,
    Chain,
    CliRun,
    flow_run_states,
    listening,
    wait_until_gone,
)
from _serving_helpers import engine_python_or_skip

pytestmark = pytest.mark.slow

NAME = "fault-matrix"
REPO_ID = "tuneship/fault-matrix"

# (stage, what the probe announces, which late steps the config switches on)
STAGES: dict[str, tuple[str, str]] = {
    "data": ("data", "none"),
    "training": ("training", "none"),
    "merge": ("merge", "none"),
    "load-check": ("vllm", "load-check"),
    "publish": ("publish", "none"),
    "serve-start": ("vllm", "serve"),
    "smoke-test": ("smoke-test", "serve"),
    # After the store moved, before the registry row. Last, so that the next run (which
    # must report it) follows it: a publish in between would clear the record.
    "register": ("register", "none"),
}
SIGNALS = {"TERM": signal.SIGTERM, "INT": signal.SIGINT}
CASES = [(stage, sig) for sig in SIGNALS for stage in STAGES]
# The next run repeats the config of one killed case: the cheap one, and the served one.
NEXT_RUN = {"INT": "publish", "TERM": "smoke-test"}


def run_config(tiny_model_dir: Path, steps: str) -> dict[str, Any]:
    """The config of a case: the tiny model, one step, vLLM only for ``steps``."""
    config: dict[str, Any] = {
        "name": NAME,
        "model": {"base": str(tiny_model_dir)},
        "data": {"path": "tuneship-demo://sample"},
        "training": {
            "max_steps": 1,
            "eval_strategy": "no",
            "require_improvement": False,
            "logging_steps": 1,
            "per_device_train_batch_size": 2,
        },
        "publish": {"target": "local", "repo_id": REPO_ID, "vllm_load_check": "off"},
        "serve": {"target": "none"},
    }
    if steps != "none":
        config["serve"] = {
            "target": "local",
            "engine_python": str(engine_python_or_skip()),
            "dtype": "float32",
            "max_model_len": 256,
            "cpu_kvcache_space_gib": 1,
            "extra_options": {"enforce_eager": True},
            # Seeded sampling: the random tiny model's greedy answer is blank lines.
            "smoke_temperature": 0.7,
        }
    if steps == "load-check":
        config["publish"]["vllm_load_check"] = "on"
        config["serve"]["target"] = "none"
    return config


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Chain]:
    """One machine state per signal, shared by that signal's cases in order."""
    return {sig: Chain(tmp_path_factory.mktemp(f"signal-{sig}")) for sig in SIGNALS}


def assert_nothing_half_written(chain: Chain) -> None:
    """Registry rows point at complete store revisions; no server is recorded running."""
    from tuneship.publishing.local_store import content_revision
    from tuneship.registry import Registry

    store = chain.home / "models"
    assert not list(store.rglob(".staging-*")), "a half-copied revision was left in the store"
    main_ref = store / REPO_ID / "refs" / "main"
    if main_ref.exists():
        assert (store / REPO_ID / "revisions" / main_ref.read_text().strip()).is_dir()
    registry_db = chain.home / "registry.db"
    if not registry_db.exists():
        return
    registry = Registry(f"sqlite:///{registry_db}")
    for model in registry.list_models():
        # Registered only once published: the row's revision is complete in the store.
        assert model.artifact_location, model
        assert content_revision(model.artifact_location) == model.artifact_revision, model
    for deployment in registry.list_deployments():
        # A server stopped by the signal is `stopped`, not `failed` or (falsely) `running`.
        assert deployment.status == "stopped", deployment


def check_cleanup(run: CliRun, chain: Chain, rc: int, signum: int) -> None:
    """Everything a killed run must leave as it found it."""
    output = run.output
    assert rc == 128 + signum, output[-4000:]
    assert f"interrupted by {signal.Signals(signum).name}" in output, output[-4000:]
    left = wait_until_gone(run.pids, chain.home)
    assert not left, f"processes left running: {left}\n{output[-4000:]}"
    assert run.pids, "the run started no processes (no temporary Prefect API?)"
    still = [port for port in run.ports if listening(port)]
    assert not still, f"ports still listening: {still}"
    states = flow_run_states(chain.prefect_home)
    assert states and {s for _, s in states} <= FINAL_STATES, states
    assert_nothing_half_written(chain)


@pytest.mark.parametrize(("stage", "sig"), CASES, ids=[f"{st}-{sg}" for st, sg in CASES])
def test_a_signal_at_each_stage_leaves_nothing_behind(
    chains: dict[str, Chain], tiny_model_dir: Path, stage: str, sig: str
) -> None:
    chain = chains[sig]
    marker, steps = STAGES[stage]
    config = chain.write_config(stage, run_config(tiny_model_dir, steps))
    signum = SIGNALS[sig]
    run = CliRun.start(chain, config, marker, f"{stage}.log")
    try:
        run.wait_for_stage(marker)
        run.send(signum)
        rc = run.wait()
    finally:
        run.kill_tree()
    check_cleanup(run, chain, rc, signum)
    wall, cpu = run.cost()
    print(f"fault-matrix {stage}-{sig}: {wall:.1f} s wall, {cpu:.1f} s CPU")


@pytest.mark.parametrize("sig", list(SIGNALS))
def test_the_next_run_with_the_same_config_succeeds(chains: dict[str, Chain], sig: str) -> None:
    """After the killed runs of this signal, the same config runs to the end."""
    chain = chains[sig]
    config = chain.root / f"{NEXT_RUN[sig]}.yaml"
    if not config.exists():
        pytest.skip(f"the {NEXT_RUN[sig]}-{sig} case did not run in this session")
    run = CliRun.start(chain, config, "", f"next-{sig}.log")
    try:
        rc = run.wait()
    finally:
        run.kill_tree()
    output = run.output
    assert rc == 0, output[-6000:]
    assert "run finished" in output
    # The registration case of this chain left a publish the registry never recorded.
    assert "was killed before the registry recorded it" in output, output[-6000:]
    journal = chain.home / "models" / f"{REPO_ID.replace('/', '--')}.publish-pending.json"
    assert not journal.exists(), "the next publish clears the record of the killed one"
    # Logs reach the API before its server stops (they used to be retried for ~75 s).
    assert "Error logging to API" not in output
    assert not wait_until_gone(run.pids, chain.home)
    states = flow_run_states(chain.prefect_home)
    assert [s for _, s in states].count("COMPLETED") == 1, states
    assert_nothing_half_written(chain)
    wall, cpu = run.cost()
    print(f"fault-matrix next-run-{sig}: {wall:.1f} s wall, {cpu:.1f} s CPU")
