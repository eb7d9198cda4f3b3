"""(i) The binarization test: the audit's attacks find an adversarial example known to exist.

Zimmermann, Brendel, Tramèr & Carlini, "Increasing Confidence in Adversarial Robustness
Evaluations" (NeurIPS 2022). For each sampled input ``x`` the model's last linear layer is
replaced by a binary readout, fitted on the model's own features so that ``x`` and many random
points of the inner ball (radius ``INNER_RADIUS * eps``) are class 0 and one random point on the
eps sphere is class 1. That point lies inside the threat model's ball, so an adversarial example
of the modified classifier provably exists; the audit's own attacks, with their own budgets, must
find one (any point of the ball classified 1). An evaluation whose attacks miss such examples
beyond the tolerance is weaker than it claims: the paper found that the original evaluations of
11 of 13 published defenses fail this test.

The white-box attacks run first and are the ones judged (all attacks when the audit has no
white-box attack); the black-box ones then run on what they left, and what they find is reported.
A random search is not hindered by masked gradients: on the digits model behind a 4-level input
quantizer, Square finds nearly every known example while the gradient attacks find none, and a
test judged on the whole ensemble would pass that broken evaluation.

The test runs once, after the eps loop, at the largest eps of the grid, on a small sample of
correctly classified inputs (at most ``SAMPLES``). A sample whose readout cannot separate the
sphere point from the inner points (the features do not tell them apart) is not a valid test and
is not counted. All samples are attacked in one batch: the binarized classifier routes each input
to the readout of the nearest sampled centre, and the centres are chosen more than ``2 * eps``
apart, so that routing never changes inside a ball. What the attacks find here is an example of
the modified classifier, not of the model: it is not counted in the robust accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robustness.audit.check import AttackCheck, CheckResult, allowed, pct, register_check
from robustness.core.threat import lp_norm

if TYPE_CHECKING:
    from robustness.core.model import ModelUnderTest

SAMPLES = 16  # inputs tested (at most; fewer when sanity_checks.sample_size is smaller)
INNER_POINTS = 999  # random inner points per input, besides the input itself (the paper's setting)
INNER_RADIUS = 0.95  # inner points lie within 0.95 eps: a 5% gap to the sphere point (the paper's)
FIT_STEPS = 400  # logistic-regression steps of the readouts at most (all inputs at once)
ADAM_LR = 0.05


class BinarizedClassifier(nn.Module):
    """The model's features followed, for each input, by the binary readout of its nearest centre.

    ``features`` maps a batch to feature vectors (the input of the model's last linear layer, or
    its logits). The output has ``num_outputs`` columns: the two binary logits ``(-s/2, s/2)``
    first, then constant columns below both, so that attacks needing many classes (targeted DLR)
    run unchanged; class 1 is the only way to be misclassified.
    """

    def __init__(
        self,
        features: FeatureExtractor,
        centres: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        norm: str,
        num_outputs: int,
    ) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("centres", centres)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        self.norm = norm
        self.num_outputs = max(2, int(num_outputs))

    def owner(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest centre of each input (constant inside each centre's ball)."""
        with torch.no_grad():
            flat = x.flatten(1)[:, None, :] - self.centres.flatten(1)[None, :, :]
            if self.norm == "linf":
                dist = flat.abs().amax(dim=2)
            elif self.norm == "l1":
                dist = flat.abs().sum(dim=2)
            else:
                dist = flat.norm(dim=2)
            return dist.argmin(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        owner = self.owner(x)
        score = (self.features(x) * self.weight[owner]).sum(dim=1) + self.bias[owner]
        two = torch.stack([-score / 2, score / 2], dim=1)
        if self.num_outputs == 2:
            return two
        floor = two.detach().amin(dim=1, keepdim=True) - 1.0
        return torch.cat([two, floor.expand(-1, self.num_outputs - 2)], dim=1)


class FeatureExtractor(nn.Module):
    """The input of the model's last linear layer with one output per class (the paper's
    penultimate features); the logits themselves when there is no such layer (a scripted or
    exported model)."""

    def __init__(self, model: ModelUnderTest) -> None:
        super().__init__()
        self.net = model.net
        self.model = model
        classes = int(model.num_classes or 0)
        linears = [m for m in model.net.modules() if isinstance(m, nn.Linear) and m.out_features == classes]
        self.layer = linears[-1] if linears else None
        self._seen: torch.Tensor | None = None

    @property
    def source(self) -> str:
        return "penultimate features" if self.layer is not None else "logits"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model(x).float().flatten(1)
        handle = self.layer.register_forward_hook(self._keep)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        seen, self._seen = self._seen, None
        if seen is None:  # the layer did not run as a module (a compiled graph): use the logits
            self.layer = None
            return logits.float().flatten(1)
        return seen.float().flatten(1)

    def _keep(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self._seen = inputs[0]


def sample_ball(
    x: torch.Tensor, n: int, radius: float, norm: str, generator: torch.Generator, *, on_sphere: bool
) -> torch.Tensor:
    """``n`` random points per input of ``x`` (shape (k, n, ...)): uniform in the ball of ``radius``
    or on its sphere (``on_sphere``); not yet clipped to the bounds."""
    shape = (x.shape[0], n, *x.shape[1:])
    view = (x.shape[0], n) + (1,) * (x.dim() - 1)
    if norm == "linf":
        delta = 2 * torch.rand(shape, generator=generator, device=x.device) - 1
        if on_sphere:  # scaled so that the largest coordinate reaches the radius
            delta = delta / delta.flatten(2).abs().amax(dim=2).view(view)
    else:
        delta = torch.randn(shape, generator=generator, device=x.device)
        if norm == "l1":
            delta = delta.sign() * torch.empty(shape, device=x.device).exponential_(generator=generator)
        delta = delta / lp_norm(delta.flatten(0, 1), norm).view(view)
        if not on_sphere:  # uniform in the ball: radius * U^(1/d)
            dims = x[0].numel()
            delta = delta * torch.rand(view, generator=generator, device=x.device) ** (1.0 / dims)
    return x[:, None] + radius * delta


def fit_readouts(
    inner: torch.Tensor, boundary: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear readouts separating each input's boundary point (class 1) from its inner points.

    ``inner``: (k, n, d) features, ``boundary``: (k, d). A class-balanced logistic regression
    per input, fitted for all inputs at once from the direction of the boundary point. Returns
    ``(weight, bias, valid)``: the decision threshold sits halfway between the highest inner
    score and the boundary score, the scores are scaled to a unit range over the training points,
    and ``valid`` says the boundary point is strictly separated from every inner point.
    """
    mean = inner.mean(dim=1)
    scale = (inner - mean[:, None]).flatten(1).std(dim=1).clamp_min(1e-12)
    a = (inner - mean[:, None]) / scale[:, None, None]
    c = (boundary - mean) / scale[:, None]
    w = (c / c.norm(dim=1, keepdim=True).clamp_min(1e-12)).clone().requires_grad_(True)
    b = torch.zeros(c.shape[0], device=c.device, requires_grad=True)
    # Adam written out: torch.optim imports torch._dynamo, which alone costs more than the fit.
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in (w, b)]
    with torch.enable_grad():
        for step in range(FIT_STEPS):
            s_in = torch.einsum("knd,kd->kn", a, w) + b[:, None]
            s_b = (c * w).sum(dim=1) + b
            if step % 10 == 0 and bool((s_b > s_in.amax(dim=1)).all()):
                break
            loss = nn.functional.softplus(s_in).mean(dim=1) + nn.functional.softplus(-s_b)
            grads = torch.autograd.grad(loss.sum() + 1e-4 * w.pow(2).sum(), (w, b))
            with torch.no_grad():
                for p, g, (m1, m2) in zip((w, b), grads, moments):
                    m1.mul_(0.9).add_(g, alpha=0.1)
                    m2.mul_(0.999).addcmul_(g, g, value=0.001)
                    m_hat = m1 / (1 - 0.9 ** (step + 1))
                    v_hat = m2 / (1 - 0.999 ** (step + 1))
                    p.sub_(ADAM_LR * m_hat / (v_hat.sqrt() + 1e-8))
    w = w.detach()
    s_in = torch.einsum("knd,kd->kn", a, w)
    s_b = (c * w).sum(dim=1)
    top = s_in.amax(dim=1)
    valid = s_b > top
    threshold = (top + s_b) / 2
    spread = (torch.maximum(s_b, top) - s_in.amin(dim=1)).clamp_min(1e-12)
    weight = w / scale[:, None] / spread[:, None]
    bias = (-(w * mean).sum(dim=1) / scale - threshold) / spread
    return weight, bias, valid


def spread_apart(x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Indices of a subset of ``x`` whose pairwise distances all exceed ``2 * eps`` (greedy, in order)."""
    keep: list[int] = []
    for i in range(x.shape[0]):
        if all(float(lp_norm((x[i] - x[j])[None], norm)[0]) > 2 * eps for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def build(
    model: ModelUnderTest, x: torch.Tensor, eps: float, norm: str, seed: int, batch_size: int = 512
) -> tuple[ModelUnderTest, torch.Tensor, str]:
    """The binarized classifier of the inputs ``x`` (already spread apart) at ``eps``.

    Returns the classifier (a ModelUnderTest with the model's bounds and device), the validity of
    each input's test, and where its features come from.
    """
    from robustness.core.model import ModelUnderTest

    dev = model.device
    lo, hi = model.bounds
    generator = torch.Generator(device=dev).manual_seed(int(seed))
    x = x.to(dev)
    features = FeatureExtractor(model)
    with model.evaluating(freeze=True), torch.no_grad():
        # Each input's inner points are drawn and passed a batch at a time and only their features
        # kept: all of them at once are 1,000 copies of every input (GBs for ImageNet-sized ones).
        f_inner = []
        for i in range(x.shape[0]):
            parts = [features(x[i : i + 1])]  # the input itself is an inner point
            for start in range(0, INNER_POINTS, batch_size):
                count = min(batch_size, INNER_POINTS - start)
                points = sample_ball(
                    x[i : i + 1], count, INNER_RADIUS * eps, norm, generator, on_sphere=False
                )
                parts.append(features(points[0].clamp(lo, hi)))
            f_inner.append(torch.cat(parts))
        boundary = sample_ball(x, 1, eps, norm, generator, on_sphere=True)[:, 0].clamp(lo, hi)
        f_boundary = features(boundary)
    f_inner = torch.stack(f_inner)
    weight, bias, valid = fit_readouts(f_inner, f_boundary)
    net = BinarizedClassifier(features, x, weight, bias, norm, int(model.num_classes or 2))
    binarized = ModelUnderTest(
        net, spec=f"binarized({model.spec})", bounds=model.bounds, device=dev, num_classes=net.num_outputs
    )
    # The routed module must reproduce the fit: each input is class 0, its sphere point class 1.
    with torch.no_grad():
        valid &= (binarized.predict(x) == 0) & (binarized.predict(boundary) == 1)
    return binarized, valid.cpu(), features.source


@register_check
class Binarization(AttackCheck):
    name = "binarization"
    letter = "i"
    title = "The attacks find adversarial examples known to exist (binarization test)"
    explanation = (
        "Each sampled input gets a modified classifier whose adversarial example inside the ball is "
        "known to exist (Zimmermann et al. 2022). Attacks that miss such examples cannot be trusted to "
        "find the model's own: its robust accuracy would be over-reported."
    )
    measures = "the audit's attacks against a binarized classifier with a known adversarial example"

    def __init__(self, audit: Any) -> None:
        super().__init__(audit)
        self.measured: dict[str, Any] | None = None
        self.skip_reason = ""

    def after_attacks(self) -> None:
        from robustness.audit.stages import Stages
        from robustness.checkpoint import derive_seed
        from robustness.core.errors import RobustnessError
        from robustness.core.rows import SampleRows

        audit = self.audit
        if getattr(audit, "randomized", False):
            self.skip_reason = "The forward pass is randomized: the features do not define a fixed readout."
            return
        eps = max(audit.eps_grid)
        k = min(SAMPLES, audit.cfg.sanity_checks.sample_size)
        chosen = audit.sample(audit.ledger.correct, "binarization", k=k)
        x = audit.x[chosen]
        apart = spread_apart(x, eps, audit.norm)
        chosen, x = chosen[apart], x[apart]
        if chosen.numel() == 0:
            self.skip_reason = "No correctly classified sample to test."
            return
        seed = derive_seed(audit.cfg.seed, "binarization")
        binarized, valid, source = build(audit.model, x, eps, audit.norm, seed, batch_size=audit.batch_size)
        n_valid = int(valid.sum())
        stages = Stages(
            model=binarized,
            x=SampleRows(x),
            y=torch.zeros(chosen.numel(), dtype=torch.long),
            norm=audit.norm,
            batch_size=audit.batch_size,
            seed=audit.cfg.seed,
            checkpoint=audit.checkpoint,
            dist=audit.dist,
            progress=audit.progress,
        )
        standing = valid.clone()
        found_by: dict[str, int] = {}
        not_run: dict[str, str] = {}
        n_white = None
        white_ran = 0
        # The white-box attacks first, then the others on what they left: the test judges the
        # gradient attacks (a black-box search that succeeds where they fail is the sign of masking).
        ordered = sorted(
            enumerate(zip(audit.attack_specs, audit.labels)),
            key=lambda item: stages.instance(item[1][0]).kind != "white-box",
        )
        any_white = any(stages.instance(spec).kind == "white-box" for spec in audit.attack_specs)
        for i, (spec, label) in ordered:
            white = stages.instance(spec).kind == "white-box"
            if any_white and not white and n_white is None:
                n_white = n_valid - int(standing.sum())
            if not standing.any():
                continue
            try:
                out = stages.run(
                    len(audit.eps_grid),
                    eps,
                    f"check-binarization-{i}-{spec.name}",
                    f"check (i) {label}",
                    spec,
                    standing.nonzero().flatten(),
                    standing,
                    show_robust=False,
                )
            except RobustnessError as exc:
                not_run[label] = exc.message
                continue
            new = out.broken[standing[out.broken]]
            standing[new] = False
            found_by[label] = int(new.numel())
            white_ran += int(white)
        n_found = n_valid - int(standing.sum())
        self.measured = {
            "eps": eps,
            "n_tested": int(chosen.numel()),
            "n_valid": n_valid,
            "n_found": n_found,
            # None: the audit has no white-box attack, and all its attacks are judged
            "n_found_white_box": n_found if n_white is None else n_white,
            "found_by": found_by,
            "not_run": not_run,
            "white_box_attacks_run": white_ran if any_white else None,
            "features": source,
            "inner_points": INNER_POINTS,
            "inner_radius": INNER_RADIUS,
        }

    def judge(self) -> CheckResult:
        if self.measured is None:
            return self.result("skip", self.skip_reason or "Not run.")
        return judge(self.measured, self.tolerance)


def judge(measured: dict[str, Any], tolerance: float) -> CheckResult:
    """``measured``: eps, n_valid (inputs whose test is valid), n_found (of those, found by any
    attack), n_found_white_box (found by the white-box attacks, which ran first; the judged
    number), found_by (attack -> count), not_run (attack -> why)."""
    name = Binarization.name
    n_valid, n_found = int(measured["n_valid"]), int(measured["n_found"])
    n_white = int(measured.get("n_found_white_box", n_found))
    if n_valid == 0:
        return CheckResult(
            name,
            "skip",
            "No sampled input gave a valid test (the model's features could not separate a point of the "
            "eps sphere from the inner ball).",
            measured,
        )
    if measured.get("white_box_attacks_run") == 0:
        return CheckResult(
            name,
            "skip",
            "None of the audit's gradient attacks can run on the test classifier (they depend on the "
            f"model's own structure: {', '.join(measured.get('not_run', {})) or 'none'}).",
            measured,
        )
    missed = n_valid - n_white
    by = ", ".join(f"{a}: {k}" for a, k in measured.get("found_by", {}).items() if k) or "none"
    text = (
        f"At eps {measured['eps']:g} the audit's gradient attacks found {pct(n_white, n_valid)} of the "
        f"adversarial examples known to exist, all attacks {pct(n_found, n_valid)} (by attack: {by})"
    )
    if measured.get("not_run"):
        text += f"; not runnable on the test classifier: {', '.join(measured['not_run'])}"
    if missed > allowed(n_valid, tolerance):
        hint = (
            " Only the black-box search found the others: the gradients are masked."
            if n_found > n_white
            else ""
        )
        return CheckResult(
            name,
            "fail",
            text
            + f". {missed} missed (at most {allowed(n_valid, tolerance)} allowed): the attacks fail where "
            "success is guaranteed, so the robust accuracy is likely over-reported (masked or obfuscated "
            f"gradients; use BPDA, EOT or stronger attacks).{hint}",
            measured,
        )
    return CheckResult(name, "pass", text + ": the attacks find what is there.", measured)
