"""Fixtures of the attack tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def model_strides(monkeypatch):
    """The strides of every input an attack feeds the model (``AttackContext.model``), in order."""
    import attacks.base

    strides: list[tuple[int, ...]] = []
    model_call = attacks.base.AttackContext.model

    def recording(ctx, inp):  # noqa: ANN001
        strides.append(inp.stride())
        return model_call(ctx, inp)

    monkeypatch.setattr(attacks.base.AttackContext, "model", recording)
    return strides
