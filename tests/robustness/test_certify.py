"""Randomized smoothing: PREDICT and CERTIFY as Cohen et al. (2019) state them, and the bracket.

The certificates are checked three ways: against a straightforward one-image-at-a-time CERTIFY
on the same noise draws, against the exact radius of a linear classifier (whose smoothed
classifier is known in closed form), and against an attack on the smoothed classifier (a
certified sample the attack breaks beyond Monte Carlo error is a bug).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from robustness.cli import main
from robustness.core.errors import ConfigError
from robustness.core.model import ModelUnderTest
from robustness.smoothing import bounds
from robustness.smoothing.bracket import bracket_rows
from robustness.smoothing.classifier import Certificates, SmoothedClassifier, noise_seed
from robustness.smoothing.empirical import AttackSettings, attack_smoothed

SIGMA = 0.25  # the noise noisy_digits_model (tests/conftest.py) was trained with
FAST_ATTACK = AttackSettings(
    attack_params={"steps": 8, "loss": "ce"}, noise_samples=4, eot_samples=2, votes=200
)


class Linear(nn.Module):
    """Two classes split by the hyperplane sum(x - 0.5) = 0: its smoothed classifier is exact."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x - 0.5).flatten(1).sum(dim=1, keepdim=True)
        return torch.cat([s, -s], dim=1)


def reference_certify(model, x, sigma, n0, n, alpha, batch_size, seed):
    """CERTIFY as the paper's pseudocode reads, one image at a time, on the documented draws."""
    predictions, radii = [], []
    for i in range(x.shape[0]):

        def sample(num, stage, i=i):
            gen = torch.Generator().manual_seed(noise_seed(seed, stage, i))
            counts = np.zeros(10, dtype=np.int64)
            left = num
            while left > 0:
                m = min(num, batch_size, left)
                noise = torch.randn((m, *x.shape[1:]), generator=gen)
                with torch.no_grad():
                    votes = model(x[i] + sigma * noise).argmax(dim=1).numpy()
                counts += np.bincount(votes, minlength=10)
                left -= m
            return counts

        top = int(np.argmax(sample(n0, "select")))
        k = int(sample(n, "estimate")[top])
        p_lower = beta.ppf(alpha, k, n - k + 1) if k > 0 else 0.0
        if p_lower < 0.5:
            predictions.append(-1)
            radii.append(float("nan"))
        else:
            predictions.append(top)
            radii.append(sigma * norm.ppf(p_lower))
    return predictions, radii


def test_certificates_match_an_independent_certify_on_the_same_draws(noisy_digits_model, digits_test):
    x = digits_test.x[:16]
    # n0 = 50 puts ten images in one forward pass; n = 1200 draws one image in rounds of 500.
    smoothed = SmoothedClassifier(noisy_digits_model, SIGMA, batch_size=500, seed=3)
    certs = smoothed.certify(x, 50, 1200, 0.001)
    ref_pred, ref_radius = reference_certify(noisy_digits_model, x, SIGMA, 50, 1200, 0.001, 500, 3)
    assert certs.prediction.tolist() == ref_pred
    np.testing.assert_allclose(certs.radius.numpy(), np.array(ref_radius), rtol=1e-9, equal_nan=True)
    assert int((certs.radius > 0.3).sum()) >= 8  # real certificates, not all abstentions
    # An image's certificate depends on its index and the seed, not on the images beside it.
    part = smoothed.certify(x[7:12], 50, 1200, 0.001, index=range(7, 12))
    assert part.prediction.tolist() == ref_pred[7:12]
    np.testing.assert_allclose(part.radius.numpy(), np.array(ref_radius[7:12]), equal_nan=True)


def test_lower_bound_and_largest_radius_are_the_papers():
    # One-sided Clopper-Pearson at alpha = the lower end of the two-sided exact interval at 2 alpha.
    for k, n in ((990, 1000), (520, 1000), (100_000, 100_000), (1, 7)):
        exact = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * 0.001, method="exact").low
        assert bounds.lower_confidence_bound(k, n, 0.001) == pytest.approx(exact, rel=1e-9)
    assert float(bounds.lower_confidence_bound(0, 1000, 0.001)) == 0.0
    # sigma 0.25, n = 100,000, alpha = 0.001: 0.25 * Phi^-1(0.001^(1e-5)) = 0.953.
    assert bounds.max_certifiable_radius(0.25, 100_000, 0.001) == pytest.approx(0.25 * 3.8129, abs=1e-3)
    assert bounds.radius_grid(0.95) == [round(0.1 * i, 10) for i in range(10)]


def test_no_radius_exceeds_the_largest_n_samples_can_certify():
    linear = ModelUnderTest(Linear(), device="cpu", num_classes=2)
    x = torch.full((3, 1, 8, 8), 0.9)  # far from the boundary: every draw votes for class 0
    certs = SmoothedClassifier(linear, 0.5, seed=1).certify(x, 20, 300, 0.01)
    top = bounds.max_certifiable_radius(0.5, 300, 0.01)
    assert certs.count.tolist() == [300, 300, 300]
    assert (certs.radius <= top).all() and certs.radius.tolist() == pytest.approx([top] * 3, abs=1e-12)
    assert top == pytest.approx(0.5 * norm.ppf(0.01 ** (1 / 300)))


def test_certified_radius_never_exceeds_the_exact_one_of_a_linear_classifier():
    """g of a linear classifier has p_A = Phi(d / sigma), d the distance to the hyperplane, so the
    certificate is sound when it stays at most d, and tight when it comes close."""
    linear = ModelUnderTest(Linear(), device="cpu", num_classes=2)
    offsets = torch.tensor([0.01, 0.02, 0.04, -0.03, 0.06])
    x = (0.5 + offsets).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()
    distance = (offsets * 64).abs() / 8  # |sum(x - 0.5)| / ||w||, w = ones(64)
    certs = SmoothedClassifier(linear, 0.5, seed=2).certify(x, 100, 20_000, 0.001)
    assert certs.prediction.tolist() == [0, 0, 0, 1, 0]
    assert (certs.radius.float() <= distance + 1e-6).all()
    assert (certs.radius.float() >= distance - 0.05).all()


def test_predict_abstains_on_a_tie_and_answers_a_clear_vote():
    linear = ModelUnderTest(Linear(), device="cpu", num_classes=2)
    x = torch.stack([torch.full((1, 8, 8), 0.5), torch.full((1, 8, 8), 0.7), torch.full((1, 8, 8), 0.3)])
    pred = SmoothedClassifier(linear, 0.5, seed=0).predict(x, 1000, 0.001)
    assert pred.tolist() == [-1, 0, 1]


def test_bad_parameters_name_the_field(digits_model):
    with pytest.raises(ConfigError) as raised:
        SmoothedClassifier(digits_model, 0.0)
    assert raised.value.field == "sigma"
    smoothed = SmoothedClassifier(digits_model, 0.25)
    for kwargs, field in (({"n0": 0}, "n0"), ({"alpha": 1.5}, "alpha"), ({"n": 2.5}, "n")):
        args = {"n0": 10, "n": 100, "alpha": 0.001, **kwargs}
        with pytest.raises(ConfigError) as raised:
            smoothed.certify(torch.zeros(1, 1, 8, 8), args["n0"], args["n"], args["alpha"])
        assert raised.value.field == field


def test_certified_accuracy_never_exceeds_the_attacked_one_beyond_monte_carlo_error(
    noisy_digits_model, digits_test
):
    x, y = digits_test.x[:32], digits_test.y[:32]
    smoothed = SmoothedClassifier(noisy_digits_model, SIGMA, seed=0)
    certs = smoothed.certify(x, 50, 1000, 0.001)
    empirical = attack_smoothed(smoothed, x, y, [0.25, 0.5], FAST_ATTACK)
    rows = bracket_rows(certs, empirical, y, FAST_ATTACK.restarts, FAST_ATTACK.votes)
    for row in rows:
        assert row["contradictions"] <= row["contradictions_allowed"]
        assert row["certified_accuracy"] <= row["empirical_accuracy"] + row["contradictions_allowed"] / 32
    low, high = rows
    # Real numbers: the noise-trained model certifies most samples at 0.25 and fewer at 0.5, and the
    # attack breaks samples the plain vote gets right.
    assert low["certified_accuracy"] >= 0.6 and high["certified_accuracy"] < low["certified_accuracy"]
    assert high["empirical_accuracy"] < float(empirical.clean_correct.float().mean())

    # Forged certificates (radii four times too large) break the same rule.
    forged = Certificates(**{**certs.__dict__, "radius": certs.radius * 4})
    rows = bracket_rows(forged, empirical, y, FAST_ATTACK.restarts, FAST_ATTACK.votes)
    assert rows[1]["contradictions"] > rows[1]["contradictions_allowed"]


def test_certify_command_writes_json_and_per_sample_lines(tmp_path, capsys):
    per_sample = tmp_path / "certs.jsonl"
    argv = ["certify", "--model", "zoo:digits-cnn", "--data", "builtin:digits", "--n-examples", "12"]
    argv += ["--sigma", "0.12", "--n0", "20", "--n", "200", "--per-sample", str(per_sample), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_samples"] == 12 and out["n"] == 200 and out["sigma"] == 0.12
    assert out["max_radius"] == pytest.approx(0.12 * norm.ppf(0.001 ** (1 / 200)))
    radii = [p["radius"] for p in out["certified_accuracy"]]
    acc = [p["certified_accuracy"] for p in out["certified_accuracy"]]
    assert radii[0] == 0.0 and max(radii) <= out["max_radius"] and acc == sorted(acc, reverse=True)
    rows = [json.loads(line) for line in per_sample.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12))
    assert {"index", "label", "prediction", "radius", "correct"} <= set(rows[0])
    for r in rows:
        assert (r["prediction"] == -1) == (r["radius"] is None)
        assert r["correct"] == (r["prediction"] == r["label"])
        assert r["radius"] is None or r["radius"] <= out["max_radius"]
    assert out["smoothed_accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 12)
    assert out["abstain_rate"] == pytest.approx(sum(r["prediction"] == -1 for r in rows) / 12)
    assert acc[0] == out["smoothed_accuracy"]


def test_certify_command_refuses_a_bad_sigma(capsys):
    argv = ["certify", "--model", "zoo:digits-cnn", "--data", "builtin:digits", "--sigma", "-1"]
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    assert "--sigma" in capsys.readouterr().err
