"""Issue 12: experiment-config values that used to pass load and fail late now fail at load."""

from typing import Any

import pytest

from experiments.config import ConfigError, config_from_dict
from tests.experiments.test_config import VALID, with_change


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("seeds", [2**63], "seeds"),
        ("variants", [], "variants"),
        ("policies.0.variants", [], "variants"),
        ("objective_weights", {"margin": float("nan")}, "objective_weights"),
        ("objective_weights", {"margin": float("inf")}, "objective_weights"),
        ("name", "..", "name"),
        ("policies.0.name", ".", "name"),
    ],
)
def test_refused_at_load_naming_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(with_change(path, value))
    message = str(err.value)
    assert field in message
    assert len(message) < 2000


def test_valid_still_loads() -> None:
    assert config_from_dict(VALID).seeds == (0, 1)
