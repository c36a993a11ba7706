"""Renders the stand-in in its own process and saves what the rendering tests check (``python render_probe.py OUT``).

Rendering stays out of the pytest process: other suites import TensorFlow there, and TensorFlow next to MuJoCo's
Mesa renderer segfaults (docs/simulation.md).
"""

from __future__ import annotations

import sys

import numpy as np

from wp_policy.sim.registry import make_env


def main(out_path: str) -> None:
    with make_env("robosuite:Lift") as env:
        obs = env.reset("Lift", seed=1)
        raw = env.last_raw_obs
        np.savez(
            out_path,
            primary=obs.images["primary"],
            wrist=obs.images["wrist"],
            raw_agentview=raw["agentview_image"],
            raw_wrist=raw["robot0_eye_in_hand_image"],
            state=obs.state,
            instruction=np.array(obs.instruction),
        )


if __name__ == "__main__":
    main(sys.argv[1])
