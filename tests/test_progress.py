"""Progress reports and lines: each shows only its own step's values."""

from __future__ import annotations

import logging

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from tuneship.training.progress import ProgressCallback
from tuneship.training.specs import TrainProgress


@pytest.fixture
def args(tmp_path: object) -> TrainingArguments:
    return TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)


def test_reports_never_repeat_or_show_the_pre_training_eval(args: TrainingArguments) -> None:
    reports: list[TrainProgress] = []
    callback = ProgressCallback(reports.append)
    control = TrainerControl()
    state = TrainerState(global_step=0, max_steps=10)

    # The base model's evaluation before a resumed run restores its step-5 checkpoint.
    callback.on_log(args, state, control, logs={"eval_loss": 9.9})
    state.global_step = 5
    callback.on_train_begin(args, state, control)
    state.global_step = 6
    callback.on_step_end(args, state, control)
    callback.on_log(args, state, control, logs={"loss": 2.0, "learning_rate": 1e-4})
    callback.on_log(args, state, control, logs={"eval_loss": 1.5})
    state.global_step = 7
    callback.on_step_end(args, state, control)

    assert [(r.step, r.logs) for r in reports] == [
        (6, {}),
        (6, {"loss": 2.0, "learning_rate": 1e-4}),
        (6, {"loss": 2.0, "learning_rate": 1e-4, "eval_loss": 1.5}),
        (7, {}),
    ]
    assert all(r.logs.get("eval_loss") != 9.9 for r in reports)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_progress_lines_show_each_value_once() -> None:
    from tuneship.tasks import training as tasks_training

    lines = _Lines()
    logger = logging.getLogger("tuneship-progress-test")
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)

    reporter = tasks_training._ProgressReporter()  # no progress artifact outside a run
    reporter.logger = logger
    reporter(TrainProgress(step=6, max_steps=10, logs={}))
    reporter(TrainProgress(step=6, max_steps=10, logs={"loss": 2.0}))
    reporter(TrainProgress(step=6, max_steps=10, logs={"loss": 2.0, "eval_loss": 1.5}))
    reporter(TrainProgress(step=7, max_steps=10, logs={}))
    reporter(TrainProgress(step=8, max_steps=10, logs={"eval_loss": 1.2}))
    logger.removeHandler(lines)
    assert lines.lines == [
        "step 6/10 {'loss': 2.0}",
        "step 6/10 {'eval_loss': 1.5}",
        "step 8/10 {'eval_loss': 1.2}",
    ]


def test_an_eval_step_is_logged_once_with_its_training_and_eval_loss() -> None:
    from tuneship.tasks import training as tasks_training

    lines = _Lines()
    logger = logging.getLogger("tuneship-progress-merge-test")
    logger.setLevel(logging.INFO)
    logger.addHandler(lines)
    reporter = tasks_training._ProgressReporter(eval_every=5)
    reporter.logger = logger
    reporter(TrainProgress(step=1, max_steps=12, logs={"loss": 3.0}))
    reporter(TrainProgress(step=5, max_steps=12, logs={"loss": 2.0}))  # waits for its eval
    reporter(TrainProgress(step=5, max_steps=12, logs={"eval_loss": 1.5}))
    reporter(TrainProgress(step=10, max_steps=12, logs={"loss": 1.0}))
    reporter(TrainProgress(step=11, max_steps=12, logs={"loss": 0.9}))  # no eval came at 10
    reporter(TrainProgress(step=12, max_steps=12, logs={"loss": 0.8}))  # the final eval step
    reporter.flush()  # training ended before that eval
    logger.removeHandler(lines)
    assert lines.lines == [
        "step 1/12 {'loss': 3.0}",
        "step 5/12 {'loss': 2.0, 'eval_loss': 1.5}",
        "step 10/12 {'loss': 1.0}",
        "step 12/12 {'loss': 0.8}",
    ]
