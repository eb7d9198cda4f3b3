"""The ``certify`` section: randomized smoothing of the audited model, bracketed by an attack.

``certify:`` in an l2 audit's config (:class:`robustness.smoothing.config.CertifyConfig`) names
the noise level; after the attacks the audit certifies the smoothed classifier of the model at
every eps of the grid and attacks it with EOT over the noise
(:func:`robustness.smoothing.bracket.certify_section`). Its result is
:class:`robustness.core.sections.certify.CertifyResult`; ``min_certified_accuracy`` adds one
gate per eps it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from robustness.audit.section import AuditSection, register_section
from robustness.core.errors import ConfigError, RobustnessError
from robustness.core.sections.certify import CertifyResult
from robustness.smoothing.config import CertifyConfig

if TYPE_CHECKING:
    from robustness.config import AuditConfig


@register_section
class Certify(AuditSection):
    name = "certify"
    description = "certify the model's Gaussian-smoothed classifier (l2) and bracket it with an EOT attack"
    config = CertifyConfig
    result = CertifyResult

    @classmethod
    def check_config(cls, block: CertifyConfig, cfg: AuditConfig) -> None:
        if cfg.threat.norm != "l2":
            raise ConfigError(
                f"the certify section certifies l2 radii, but threat.norm is {cfg.threat.norm!r}",
                field="threat.norm",
                fix="Set threat.norm: l2 (Gaussian smoothing certifies l2 balls only), or drop the certify block.",
            )
        grid = [float(e) for e in cfg.threat.eps]
        for eps in block.min_certified_accuracy or {}:
            if not any(abs(float(eps) - e) <= 1e-12 for e in grid):
                raise ConfigError(
                    f"certify.min_certified_accuracy names eps {eps:g}, which is not in threat.eps {grid}",
                    field="certify.min_certified_accuracy",
                    fix="Use eps values of threat.eps.",
                )
        from attacks.registry import get_attack

        try:
            inner = get_attack(block.attack, **block.attack_params)
        except RobustnessError as exc:  # it names the bad name or parameter; say where it came from
            raise ConfigError(
                f"certify.attack {block.attack!r}: {exc.message}",
                field="certify.attack_params" if exc.field not in (None, "attack") else "certify.attack",
                fix=exc.fix or "Use e.g. attack: pgd with attack_params: {steps: 20}.",
            ) from None
        if "l2" not in inner.norms:
            raise ConfigError(
                f"certify.attack {block.attack!r} has no l2 mode",
                field="certify.attack",
                fix="Use pgd or apgd-ce.",
            )

    def run(self) -> dict[str, Any]:
        from robustness.smoothing.bracket import certify_section
        from robustness.smoothing.classifier import SmoothedClassifier
        from robustness.smoothing.empirical import AttackSettings

        block: CertifyConfig = self.block
        audit = self.audit
        seed = audit.cfg.seed if block.seed is None else block.seed
        count = audit.n if block.n_examples is None else min(block.n_examples, audit.n)
        smoothed = SmoothedClassifier(audit.model, block.sigma, batch_size=block.batch_size, seed=seed)
        settings = AttackSettings(
            attack=block.attack,
            attack_params=dict(block.attack_params),
            noise_samples=block.noise_samples,
            eot_samples=block.eot_samples,
            restarts=block.restarts,
            votes=block.votes,
        )
        audit.progress.message(
            f"certify: randomized smoothing (sigma {block.sigma:g}, n={block.n}) of {count} samples, then EOT attack"
        )
        return certify_section(
            smoothed,
            audit.x[:count],
            audit.y[:count],
            audit.eps_grid,
            n0=block.n0,
            n=block.n,
            alpha=block.alpha,
            settings=settings,
            seed=seed,
        )

    def gates(self, result: dict[str, Any]) -> list[dict[str, Any]]:
        from robustness.gates import gate

        block: CertifyConfig = self.block
        judge = self.audit.cfg.gates.judge
        out = []
        for eps, threshold in (block.min_certified_accuracy or {}).items():
            row = next(r for r in result["rows"] if abs(r["eps"] - float(eps)) <= 1e-12)
            value = row["certified_ci"][0] if judge == "ci_low" else row["certified_accuracy"]
            out.append(
                gate(
                    f"min_certified_accuracy@{eps:g}",
                    "min_certified_accuracy",
                    float(eps),
                    bool(value >= threshold),
                    value,
                    ">=",
                    float(threshold),
                    judge,
                    f"certified accuracy {row['certified_accuracy']:.3f} at l2 radius {eps:g} "
                    f"(95% CI low {row['certified_ci'][0]:.3f}), sigma {block.sigma:g}, n={block.n}",
                )
            )
        return out
