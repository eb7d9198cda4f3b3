"""The ``extraction`` section: a thief with query access copies the model, per query budget.

``extraction:`` in an audit config (:class:`robustness.privacy.config.ExtractionConfig`) names the
thief's query pool (default: 80% of the audit's data), the budgets and what the model returns;
after the attacks the section runs :func:`robustness.privacy.audit.extraction_audit`. With a
watermark key (its own, or the ``watermark`` section's) each stolen copy is tested for the mark.
Its result is :class:`robustness.core.sections.extraction.ExtractionResult`; budgets larger than the
pool are skipped and listed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustness.audit.section import AuditSection, register_section
from robustness.core.sections.extraction import ExtractionResult
from robustness.privacy.config import ExtractionConfig

if TYPE_CHECKING:
    from robustness.config import AuditConfig


@register_section
class Extraction(AuditSection):
    name = "extraction"
    description = "model extraction: a thief's copy trained on N queries, agreement and accuracy per budget"
    config = ExtractionConfig
    result = ExtractionResult

    @classmethod
    def check_config(cls, block: ExtractionConfig, cfg: AuditConfig) -> None:
        from robustness.config import check_file

        if block.watermark_key is not None:
            check_file(block.watermark_key, "extraction.watermark_key", "watermark key file")

    @classmethod
    def check_inputs(cls, block: ExtractionConfig, cfg: AuditConfig) -> None:
        from robustness.config import check_data_spec

        if block.data is not None:
            check_data_spec(block.data, "extraction.data")
        if block.eval_data is not None:
            check_data_spec(block.eval_data, "extraction.eval_data")

    def run(self) -> dict[str, Any]:
        from robustness.privacy.audit import extraction_audit

        block, audit = self.block, self.audit
        key, alpha = block.watermark_key, None
        marked = getattr(audit.cfg, "watermark", None)
        if marked is not None:
            alpha = marked.alpha
            key = key if key is not None else marked.key
        audit.progress.message("extraction: stealing the model with query budgets")
        return extraction_audit(
            audit.model,
            block.data if block.data is not None else audit.dataset(),
            block.queries,
            eval_data=block.eval_data
            if block.eval_data is not None
            else (audit.dataset() if block.data else None),
            outputs=block.outputs,
            epochs=block.epochs,
            lr=block.lr,
            architecture=block.architecture,
            watermark_key=key,
            watermark_alpha=alpha,
            seed=block.seed,
            clip_budgets=True,
            field_prefix="extraction.",
            progress=audit.progress.message,
        )
