"""Issue 12: names `.` and `..` must be refused so no file is written outside the run dir."""

import pydantic
import pytest

from experiments import config


class _M(pydantic.BaseModel):
    name: config.Name


@pytest.mark.parametrize("bad", [".", ".."])
def test_dot_names_rejected(bad: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        _M(name=bad)


@pytest.mark.parametrize("ok", ["a.b", "..a", "ppo", "v-1_2"])
def test_ordinary_names_accepted(ok: str) -> None:
    assert _M(name=ok).name == ok
