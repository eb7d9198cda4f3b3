"""The ``corruptions`` section: accuracy under the 15 common corruptions at five severities.

``corruptions:`` in an audit config (:class:`CorruptionsConfig`) turns it on; after the attacks
the audit measures the model's accuracy on its data under each corruption and severity
(:func:`robustness.core.corruptions.accuracy.corruption_accuracy`). Its result is
:class:`robustness.core.sections.corruptions.CorruptionsResult`; ``min_corruption_accuracy``
adds a gate on the mean corruption accuracy, judged like the other gates (``gates.judge``: the
interval's low end by default).

Reading the config imports this file: it imports no torch at module level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from robustness.audit.section import AuditSection, register_section
from robustness.config import Fraction, Seed
from robustness.core.errors import ConfigError, RobustnessError
from robustness.core.sections.corruptions import CorruptionsResult

if TYPE_CHECKING:
    from robustness.config import AuditConfig

Severity = Annotated[int, Field(ge=1, le=5)]


class CorruptionsConfig(BaseModel):
    """The ``corruptions:`` block of an audit config (``corruptions: {}`` runs all 15 at 5 severities)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    names: list[str] | None = Field(
        None, description="corruptions to run (default: all 15 of CIFAR-10-C / ImageNet-C)"
    )
    severities: list[Severity] = Field(
        default_factory=lambda: [1, 2, 3, 4, 5], description="severities, 1 to 5"
    )
    n_examples: Annotated[int, Field(ge=1)] | None = Field(
        None, description="measure on the first N samples of the audit's data only (default: all)"
    )
    seed: Seed | None = Field(None, description="seed of the corruptions' draws (default: the audit's seed)")
    example_severity: Severity = Field(3, description="severity of the strip of examples in the report")
    min_corruption_accuracy: Fraction | None = Field(
        None, description="least mean corruption accuracy (a gate, judged as gates.judge says)"
    )


@register_section
class Corruptions(AuditSection):
    name = "corruptions"
    description = "accuracy under the 15 common corruptions (noise, blur, weather, digital) at 5 severities"
    config = CorruptionsConfig
    result = CorruptionsResult

    @classmethod
    def check_config(cls, block: CorruptionsConfig, cfg: AuditConfig) -> None:
        from robustness.core.corruptions.accuracy import check_names

        if len(set(block.severities)) != len(block.severities) or not block.severities:
            raise ConfigError(
                f"corruptions.severities must name distinct severities, got {block.severities}",
                field="corruptions.severities",
                fix="Use e.g. [1, 2, 3, 4, 5].",
            )
        try:
            check_names(block.names)
        except RobustnessError as exc:  # the registry's error, said where it came from
            raise ConfigError(
                f"corruptions.names: {exc.message}", field="corruptions.names", fix=exc.fix
            ) from None

    def run(self) -> dict[str, Any]:
        from robustness.core.corruptions.accuracy import check_names, corruption_accuracy

        block: CorruptionsConfig = self.block
        audit = self.audit
        count = audit.n if block.n_examples is None else min(block.n_examples, audit.n)
        audit.progress.message(
            f"corruptions: {len(check_names(block.names))} corruptions x {len(block.severities)} severities "
            f"on {count} samples"
        )
        return corruption_accuracy(
            audit.model,
            audit.x[:count],
            audit.y[:count],
            names=block.names,
            severities=block.severities,
            seed=audit.cfg.seed if block.seed is None else block.seed,
            batch_size=audit.batch_size,
            example_severity=block.example_severity,
        )

    def gates(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        from robustness.gates import gate

        block: CorruptionsConfig = self.block
        if block.min_corruption_accuracy is None:
            return []
        judge = self.audit.cfg.gates.judge
        mean, interval = result["mean_corruption_accuracy"], result["mean_corruption_ci"]
        value = interval[0] if judge == "ci_low" else mean
        return [
            gate(
                "min_corruption_accuracy",
                "min_corruption_accuracy",
                None,
                bool(value >= block.min_corruption_accuracy),
                value,
                ">=",
                float(block.min_corruption_accuracy),
                judge,
                f"mean corruption accuracy {mean:.3f} (95% CI low {interval[0]:.3f}) over "
                f"{len(result['corruptions'])} corruptions x {len(result['severities'])} severities, "
                f"n={result['n']}",
            )
        ]
