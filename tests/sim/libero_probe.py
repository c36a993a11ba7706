"""Runs one real LIBERO task in its own process and saves what test_libero_real.py checks
(``python libero_probe.py OUT.npz``).

Rendering stays out of the pytest process (TensorFlow next to MuJoCo's Mesa renderer segfaults, see conftest.py),
and one LIBERO process at a time keeps memory in bounds (2-2.8 GB each).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from wp_policy.sim.conventions import WAIT_ACTION
from wp_policy.sim.protocol import NUM_WAIT_STEPS
from wp_policy.sim.registry import make_env

ENV = "libero:libero_object"
MOVE_X = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # +5 cm per step along world x, gripper open
CLOSE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def main(out_path: str) -> None:
    started = time.perf_counter()
    with make_env(ENV) as env:
        task = env.tasks[0]
        states = env.init_states(task.name)
        first = env.reset(task.name, init_state=states[0])
        create_reset_s = time.perf_counter() - started
        raw = env.last_raw_obs
        flat = env.flat_state()
        t0 = time.perf_counter()
        waited = [env.step(WAIT_ACTION) for _ in range(NUM_WAIT_STEPS)]
        moved = [env.step(MOVE_X) for _ in range(4)]
        closed = [env.step(CLOSE) for _ in range(6)]
        step_s = (time.perf_counter() - t0) / (len(waited) + len(moved) + len(closed))
        again = env.reset(task.name, init_state=states[0])
        np.savez(
            out_path,
            task=np.array(task.name), instruction=np.array(task.instruction), max_steps=task.max_steps,
            obs_instruction=np.array(first.instruction), num_tasks=len(env.tasks), init_states=states,
            primary=first.images["primary"], wrist=first.images["wrist"],
            raw_agentview=raw["agentview_image"], raw_wrist=raw["robot0_eye_in_hand_image"],
            raw_eef_pos=raw["robot0_eef_pos"], raw_eef_quat=raw["robot0_eef_quat"],
            raw_gripper_qpos=raw["robot0_gripper_qpos"], state=first.state, flat_state=flat,
            waited=waited[-1].obs.state, moved=moved[-1].obs.state, closed=closed[-1].obs.state,
            done=[r.done for r in (*waited, *moved, *closed)], success=[r.info["success"] for r in closed],
            again_primary=again.images["primary"], again_state=again.state,
            create_reset_s=create_reset_s, step_s=step_s,
        )


if __name__ == "__main__":
    main(sys.argv[1])
