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


def test_cell_and_model_paths_never_leave_the_run_directory(tmp_path) -> None:
    from experiments.config import ConfigError
    from experiments.runner import cell_dir, model_dir

    assert cell_dir(tmp_path, "base", "ppo", 0).is_relative_to(tmp_path)
    for where in (cell_dir, model_dir):
        for variant, policy in ((".", "ppo"), ("base", ".."), ("..", "..")):
            with pytest.raises(ConfigError, match="outside"):
                where(tmp_path, variant, policy, 0)
