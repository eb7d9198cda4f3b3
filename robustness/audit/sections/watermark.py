"""The ``watermark`` section: ownership of the audited model, and whether the mark survives removal.

``watermark:`` in an audit config (:class:`robustness.watermark.survival.WatermarkConfig`) names a
key; after the attacks the audit verifies the model against it and derives each removal
surrogate to verify it again (:func:`robustness.watermark.survival.watermark_section`). Its result
is :class:`robustness.core.sections.watermark.WatermarkResult`; it adds the gate
``watermark_verified``: an audit asked to check ownership fails when ownership cannot be shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustness.audit.section import AuditSection, register_section
from robustness.core.sections.watermark import WatermarkResult
from robustness.watermark.survival import WatermarkConfig

if TYPE_CHECKING:
    from robustness.config import AuditConfig


@register_section
class Watermark(AuditSection):
    name = "watermark"
    description = "verify a trigger-set watermark and test whether it survives removal attacks"
    config = WatermarkConfig
    result = WatermarkResult

    @classmethod
    def check_config(cls, block: WatermarkConfig, cfg: AuditConfig) -> None:
        from robustness.config import check_file

        # Checked now, not when the watermark test runs after every attack.
        check_file(block.key, "watermark.key", "watermark key file")

    @classmethod
    def check_inputs(cls, block: WatermarkConfig, cfg: AuditConfig) -> None:
        from robustness.config import check_data_spec, check_model_spec

        for i, spec in enumerate(block.reference_models):
            check_model_spec(spec, None, field=f"watermark.reference_models.{i}")
        if block.attack_data is not None:
            check_data_spec(block.attack_data, "watermark.attack_data")

    def run(self) -> dict[str, Any]:
        from robustness.core.data import load_data
        from robustness.watermark.survival import watermark_section

        block, model = self.block, self.audit.model
        attack_data = (
            load_data(block.attack_data, bounds=model.bounds, num_classes=model.num_classes)
            if block.attack_data
            else None
        )
        self.audit.progress.message("watermark: verifying the key and testing survival")
        return watermark_section(
            model,
            block.key,
            self.audit.dataset(),
            alpha=block.alpha,
            surrogates=block.surrogates,
            reference_models=block.reference_models,
            attack_data=attack_data,
            seed=block.seed,
        )

    def gates(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        from robustness.gates import gate

        verified = bool(result["verified"])
        return [
            gate(
                "watermark_verified",
                "watermark_verified",
                None,
                verified,
                result["p_value"],
                "<=",
                result["alpha"],
                "p_value <= alpha",
                f"trigger matches k={result['k']}/{result['K']}, p0={result['p0']:.3f} "
                f"({result.get('p0_method', 'p0')}), p-value {result['p_value']:.2g} "
                f"{'<=' if verified else '>'} alpha {result['alpha']:g}",
            )
        ]
