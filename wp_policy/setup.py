"""wp_policy: an ament_python ROS 2 package that also installs with plain `pip install -e wp_policy`."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "wp_policy"
HERE = Path(__file__).resolve().parent


def tree(src: str, dest: str) -> list[tuple[str, list[str]]]:
    """data_files entries that mirror every file under ``src`` (a folder beside setup.py) into ``dest``."""
    out = {}
    for path in sorted((HERE / src).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(HERE)
            out.setdefault(str(Path(dest) / rel.parent.relative_to(src)), []).append(str(rel))
    return sorted(out.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # the shipped default policy (make demo) travels with the package, so non-editable installs find it too
    package_data={PACKAGE: [str(p.relative_to(HERE / PACKAGE)) for p in (HERE / PACKAGE / "assets").rglob("*")
                            if p.is_file()]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch", f"share/{PACKAGE}/launch"),
        *tree("configs", f"share/{PACKAGE}/configs"),
    ],
    python_requires=">=3.10",
    install_requires=["numpy", "pyyaml", "safetensors", "sentencepiece", "opencv-python-headless", "rosbags", "tqdm",
                      "torch", "transformers>=5,<6", "imageio", "imageio-ffmpeg", "matplotlib"],
    zip_safe=True,
    maintainer="wp-vla maintainers",
    maintainer_email="maintainers@wp-vla.dev",
    description="Waypoint VLA policy: models, runtime and ROS 2 nodes",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "wp-launch = wp_policy.supervisor:main",
            "wp-bag = wp_policy.ros.bag_cli:main",
            "wp_aggregator = wp_policy.ros.aggregator_node:main",
            "wp_planner = wp_policy.ros.planner_node:main",
            "wp_filler = wp_policy.ros.filler_node:main",
            "wp_final_hold = wp_policy.ros.final_hold_node:main",
            "wp-stop = wp_policy.ros.stop_cli:main",
            "wp-eval = wp_policy.sim.eval_cli:main",
            "wp-demo = wp_policy.demo:main",
            "wp_libero_bridge = wp_policy.ros.libero_bridge_node:main",
        ]
    },
)
