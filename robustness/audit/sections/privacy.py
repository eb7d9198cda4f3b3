"""The ``privacy`` section: membership inference against the audited model, and its gate.

``privacy:`` in an audit config (:class:`robustness.privacy.config.PrivacyConfig`) names the
members (and optionally non-members: default, the audit's data), the attacks and where the
reference models come from; after the attacks the section runs
:func:`robustness.privacy.audit.privacy_audit`. Its result is
:class:`robustness.core.sections.privacy.PrivacyResult`. Gate ``max_tpr_at_fpr`` (FPR -> TPR): the
upper end of the 95% interval of the strongest attack's TPR at that FPR must not exceed the
limit, since here a low number is the good one and the data must show it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustness.audit.section import AuditSection, register_section
from robustness.core.sections.privacy import PrivacyResult
from robustness.privacy.config import PrivacyConfig

if TYPE_CHECKING:
    from robustness.config import AuditConfig


@register_section
class Privacy(AuditSection):
    name = "privacy"
    description = "membership inference (loss threshold, offline RMIA, offline LiRA): TPR at low FPR"
    config = PrivacyConfig
    result = PrivacyResult

    @classmethod
    def check_inputs(cls, block: PrivacyConfig, cfg: AuditConfig) -> None:
        from robustness.config import check_data_spec, check_model_spec

        check_data_spec(block.members, "privacy.members", n_examples=block.n_members)
        if block.non_members is not None:
            check_data_spec(block.non_members, "privacy.non_members", n_examples=block.n_non_members)
        if block.reference.data is not None:
            check_data_spec(block.reference.data, "privacy.reference.data")
        for i, spec in enumerate(block.reference_models):
            check_model_spec(spec, None, field=f"privacy.reference_models.{i}")

    def run(self) -> dict[str, Any]:
        from robustness.privacy.audit import privacy_audit
        from robustness.privacy.references import ReferenceRecipe
        from robustness.privacy.roc import DEFAULT_FPRS

        block = self.block
        ref = block.reference
        recipe = ReferenceRecipe(
            n_models=ref.n_models,
            architecture=ref.architecture,
            method=ref.method,
            epochs=ref.epochs,
            lr=ref.lr,
            batch_size=ref.batch_size,
            share=ref.share,
            seed=block.seed,
            params=dict(ref.params),
        )
        self.audit.progress.message("privacy: membership inference")
        return privacy_audit(
            self.audit.model,
            block.members,
            block.non_members if block.non_members is not None else self.audit.dataset(),
            block.attacks,
            reference_models=block.reference_models,
            recipe=recipe,
            reference_data=ref.data,
            n_members=block.n_members,
            n_non_members=block.n_non_members,
            fprs=sorted({*DEFAULT_FPRS, *map(float, block.max_tpr_at_fpr)}, reverse=True),
            seed=block.seed,
            field_prefix="privacy.",
            progress=self.audit.progress.message,
        )

    def gates(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        from robustness.gates import gate
        from robustness.privacy.roc import fpr_key

        out = []
        for fpr, limit in sorted(self.block.max_tpr_at_fpr.items()):
            key = fpr_key(fpr)
            # The attack whose interval reaches highest: the gate passes only if every attack's does not.
            worst = max(result["attacks"], key=lambda a: a["tpr_at_fpr_ci"][key][1])
            upper = float(worst["tpr_at_fpr_ci"][key][1])
            point = next(p for p in worst["operating_points"] if fpr_key(p["fpr"]) == key)
            ok = upper <= limit
            note = (
                ""
                if point["resolved"]
                else f"; {result['n_non_members']} non-members cannot resolve FPR {fpr:g}, read at the first "
                "false positive (over-states the leak)"
            )
            out.append(
                gate(
                    f"max_tpr_at_fpr:{fpr:g}",
                    "max_tpr_at_fpr",
                    None,
                    ok,
                    upper,
                    "<=",
                    limit,
                    "ci_high",
                    f"membership TPR at FPR {fpr:g} ({worst['attack']}): {worst['tpr_at_fpr'][key]:.4f}, "
                    f"95% upper bound {upper:.4f} {'<=' if ok else '>'} {limit:g}{note}",
                    fpr=float(fpr),
                )
            )
        return out
