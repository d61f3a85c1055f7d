"""The eval gate: is the fine-tuned model better than the base on the same eval set?"""

from __future__ import annotations

from pydantic import BaseModel

from tuneship.errors import EvalGateError


class GateResult(BaseModel):
    """Outcome of comparing base and fine-tuned eval loss."""

    base_eval_loss: float | None
    eval_loss: float | None
    improved: bool | None
    required: bool
    message: str


def check_eval_gate(
    base_eval_loss: float | None, eval_loss: float | None, *, require_improvement: bool
) -> GateResult:
    """Compare eval losses and stop the run when improvement is required but missing.

    Args:
        base_eval_loss: Eval loss of the base model (before training).
        eval_loss: Eval loss of the fine-tuned model on the same eval set.
        require_improvement: Raise when the fine-tune is not strictly better.

    Returns:
        The comparison, with a one-line message for logs and artifacts.

    Raises:
        EvalGateError: Improvement is required and the fine-tune is not better, or no eval
            losses exist to compare.
    """
    if base_eval_loss is None or eval_loss is None:
        if require_improvement:
            raise EvalGateError(
                "training.require_improvement is true but evaluation is off "
                "(training.eval_strategy=no), so there is nothing to compare"
            )
        return GateResult(
            base_eval_loss=base_eval_loss,
            eval_loss=eval_loss,
            improved=None,
            required=False,
            message="no eval set: base and fine-tuned models were not compared",
        )
    improved = eval_loss < base_eval_loss
    message = f"eval loss {base_eval_loss:.4f} (base) -> {eval_loss:.4f} (fine-tuned): " + (
        "better" if improved else "NOT better"
    )
    if require_improvement and not improved:
        raise EvalGateError(
            message + "; nothing was published because training.require_improvement is true"
        )
    return GateResult(
        base_eval_loss=base_eval_loss,
        eval_loss=eval_loss,
        improved=improved,
        required=require_improvement,
        message=message,
    )
