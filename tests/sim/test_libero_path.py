"""The real LIBERO path without LIBERO's assets: config/asset checks, init-state files, env names, the errors a
machine without LIBERO gets, and the set-up step that writes the config and the assets link.

Init-state files are real ``torch.save`` files in LIBERO's format (a pickled numpy array [N, 1 + nq + nv]); that they
restore a scene is tested against the robosuite stand-in in test_robosuite_env.py.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wp_policy.sim.base import SimUnavailableError
from wp_policy.sim import libero_install
from wp_policy.sim.libero_env import libero_config_file, load_init_states, require_libero, resolve_libero_paths
from wp_policy.sim.registry import SimEnvConfig, available_env_names, backend_of, make_env, parse_env_name

LIBERO_INSTALLED = importlib.util.find_spec("libero") is not None


def _libero_tree(root, skip=()):
    for key in ("bddl_files", "init_states", "assets"):
        if key not in skip:
            (root / key).mkdir(parents=True)
    if "assets" not in skip:
        (root / "assets" / "scenes").mkdir()
    config = root / "config.yaml"
    config.write_text("".join(f"{k}: {root / k}\n" for k in ("bddl_files", "init_states", "assets", "datasets")))
    return config


def test_missing_package_error_names_the_package_and_the_fallback(monkeypatch):
    monkeypatch.setattr("wp_policy.sim.libero_env.libero_package_dir", lambda: None)  # as on a machine without it
    with pytest.raises(SimUnavailableError, match="`libero` package is not installed: run `make setup`.*robosuite:"):
        make_env("libero:libero_object")
    with pytest.raises(SimUnavailableError, match="make setup"):
        require_libero()


def test_config_file_follows_libero_config_path(monkeypatch, tmp_path):
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path))
    assert libero_config_file() == tmp_path / "config.yaml"


def test_config_lives_in_the_python_environment_by_default(monkeypatch):
    """Nobody has to export LIBERO_CONFIG_PATH, and nothing goes to the user's home."""
    monkeypatch.setenv("LIBERO_CONFIG_PATH", "unset below; restored after the test")
    monkeypatch.delenv("LIBERO_CONFIG_PATH")
    assert libero_config_file() == libero_install.default_config_dir() / "config.yaml"
    assert libero_install.default_config_dir().parent == Path(sys.prefix)
    assert libero_install.use_config_dir() == libero_install.default_config_dir()
    assert os.environ["LIBERO_CONFIG_PATH"] == str(libero_install.default_config_dir())


def test_an_empty_config_dir_names_what_is_missing(monkeypatch, tmp_path):
    """A machine without LIBERO's config or assets: make_env names the missing file (or package) and the fix."""
    monkeypatch.setenv("LIBERO_CONFIG_PATH", str(tmp_path))
    with pytest.raises(SimUnavailableError, match=f"(config file {tmp_path / 'config.yaml'} not found|package is not "
                                                  "installed): run `make setup`"):
        make_env("libero:libero_object")


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(SimUnavailableError, match=f"config file {tmp_path / 'nope.yaml'} not found.*make setup"):
        resolve_libero_paths(tmp_path / "nope.yaml")


def test_missing_assets_folder_is_named(tmp_path):
    config = _libero_tree(tmp_path, skip=("assets",))
    with pytest.raises(SimUnavailableError, match=f"assets folder {tmp_path / 'assets'} .*does not exist.*assets"):
        resolve_libero_paths(config)


def test_assets_folder_without_scenes_is_named(tmp_path):
    config = _libero_tree(tmp_path)
    (tmp_path / "assets" / "scenes").rmdir()
    with pytest.raises(SimUnavailableError, match="assets folder .* has no scenes/.*make setup"):
        resolve_libero_paths(config)


def test_bad_configs_are_named(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("bddl_files: /x\n")
    with pytest.raises(SimUnavailableError, match="lacks the key\\(s\\) \\['init_states', 'assets'\\]"):
        resolve_libero_paths(config)
    config.write_text("bddl_files: [unclosed\n")
    with pytest.raises(SimUnavailableError, match="not valid YAML"):
        resolve_libero_paths(config)


def test_complete_config_resolves(tmp_path):
    paths = resolve_libero_paths(_libero_tree(tmp_path))
    assert paths.assets == tmp_path / "assets" and paths.init_states == tmp_path / "init_states"


def test_init_states_load_from_a_torch_saved_file(tmp_path):
    states = np.random.default_rng(0).normal(size=(5, 32))
    torch.save(states, tmp_path / "task.pruned_init")  # LIBERO's format: a pickled numpy array
    loaded = load_init_states(tmp_path / "task.pruned_init")
    assert loaded.dtype == np.float64 and np.array_equal(loaded, states)
    torch.save(torch.from_numpy(states), tmp_path / "tensor.pruned_init")
    assert np.array_equal(load_init_states(tmp_path / "tensor.pruned_init"), states)


def test_bad_init_state_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pruned_init"):
        load_init_states(tmp_path / "missing.pruned_init")
    torch.save(np.zeros(32), tmp_path / "flat.pruned_init")
    with pytest.raises(ValueError, match="\\[N, state_dim\\].*\\(32,\\)"):
        load_init_states(tmp_path / "flat.pruned_init")
    torch.save(np.full((2, 32), np.nan), tmp_path / "nan.pruned_init")
    with pytest.raises(ValueError, match="NaN"):
        load_init_states(tmp_path / "nan.pruned_init")
    torch.save({"not": "states"}, tmp_path / "dict.pruned_init")
    with pytest.raises(ValueError, match="numeric array"):
        load_init_states(tmp_path / "dict.pruned_init")


@pytest.mark.skipif(not LIBERO_INSTALLED, reason="the libero package is not installed here")
def test_setup_writes_the_config_once(tmp_path):
    """What `make setup` runs: the config LIBERO itself would write (package paths), then nothing on a re-run."""
    changed = libero_install.install(tmp_path)
    assert changed == [f"wrote {tmp_path / 'config.yaml'}"]
    package = libero_install.libero_package_dir()
    paths = resolve_libero_paths(tmp_path / "config.yaml")
    assert (paths.bddl_files, paths.init_states, paths.assets) == \
        (package / "bddl_files", package / "init_files", package / "assets")
    assert (package / "assets").resolve() == libero_install.asset_wheel_dir().resolve()
    assert libero_install.install(tmp_path) == []


def test_env_names():
    assert parse_env_name("robosuite:Lift,Stack") == ("robosuite", ("Lift", "Stack"))
    assert parse_env_name("libero:libero_goal") == ("libero", ("libero_goal",))
    assert "libero:libero_90" in available_env_names() and "robosuite:Stack" in available_env_names()
    with pytest.raises(ValueError, match="'<backend>:<task or suite>'"):
        parse_env_name("gym:Lift")
    with pytest.raises(ValueError, match="unknown robosuite target\\(s\\) \\['Door'\\]"):
        parse_env_name("robosuite:Door")
    with pytest.raises(ValueError, match="exactly one suite"):
        parse_env_name("libero:libero_goal,libero_10")
    with pytest.raises(ValueError, match="names no task"):
        parse_env_name("robosuite:")
    assert backend_of("libero:libero_goal").uses_init_states and backend_of("libero:libero_goal").always_renders
    assert not backend_of("robosuite:Lift").uses_init_states and backend_of("robosuite:Lift").recovery_demos


def test_sim_env_config_validation():
    assert SimEnvConfig().env == "robosuite:Lift" and SimEnvConfig().image_size == 256
    with pytest.raises(ValueError, match="always renders"):
        SimEnvConfig(env="libero:libero_object", render=False)
    with pytest.raises(ValueError, match="image_size must be positive"):
        SimEnvConfig(image_size=0)
