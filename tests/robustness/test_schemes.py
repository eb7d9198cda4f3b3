"""Model and data schemes: ``SCHEME:NAME`` specs are plug-ins found through one registry each."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustness.core.data import DATA_SCHEMES, Dataset, load_data
from robustness.core.errors import ConfigError, DataError, ModelError
from robustness.core.model import MODEL_SCHEMES, build_architecture, load_model
from robustness.core.registry import Registry


class ToyScheme:
    """A catalogue of one untrained linear model, as a plug-in would register it."""

    def load(self, name: str):
        return self.architecture(name), {"bounds": (0.0, 1.0), "num_classes": 3}

    def architecture(self, name: str, kwargs=None):
        if name != "linear":
            raise ModelError(f"unknown toy model {name!r}", field="model", fix="Use toy:linear.")
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))

    def names(self):
        return ["linear"]

    def factory_paths(self):
        return set()


@pytest.fixture
def toy_schemes():
    MODEL_SCHEMES.add("toy", scheme := ToyScheme())

    def toy_data(spec: str) -> Dataset:
        ids = [f"toy-{i}" for i in range(5)]
        return Dataset(torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1]), ids, spec=spec)

    DATA_SCHEMES.add("toy", loader := toy_data)
    yield
    assert MODEL_SCHEMES._items.pop("toy") is scheme and DATA_SCHEMES._items.pop("toy") is loader


def test_a_registered_model_scheme_loads_and_builds(toy_schemes):
    model = load_model("toy:linear", device="cpu")
    assert model.num_classes == 3 and model.spec == "toy:linear"
    assert isinstance(build_architecture({"factory": "toy:linear"}), nn.Sequential)
    with pytest.raises(ModelError, match="cannot be combined with a toy model"):
        load_model("toy:linear", weights="w.safetensors")


def test_a_registered_data_scheme_loads(toy_schemes):
    data = load_data("toy:anything")
    assert len(data) == 5 and data.spec == "toy:anything" and data.num_classes == 3


def test_the_zoo_is_a_scheme_found_through_the_entry_point():
    assert "zoo" in MODEL_SCHEMES.names() and "builtin" in DATA_SCHEMES.names()


def test_unknown_names_get_the_one_error():
    registry: Registry[int] = Registry("widget", error=DataError, field="widget")
    registry.add("sprocket", 1)
    with pytest.raises(DataError) as e:
        registry.get("sprockett")
    assert str(e.value) == "widget: unknown widget 'sprockett'. Known: sprocket. Did you mean 'sprocket'?"
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("sprocket", 2)


def test_validate_checks_a_registered_scheme_without_loading_it(toy_schemes):
    from robustness.config import check_data_spec, check_model_spec

    check_model_spec("toy:linear", None, field="model.spec")
    check_data_spec("toy:anything", "data.spec")
    with pytest.raises(ConfigError, match="unknown model 'toy:nope'") as e:
        check_model_spec("toy:nope", None, field="model.spec")
    assert e.value.field == "model.spec" and "toy:linear" in e.value.fix
