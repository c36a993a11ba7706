"""Episode recording (wp_policy.sim.recording): plan records, the composed video frames (both views side by side,
header text, the plan overlay, the termination banner) with a stand-in camera model, and the MP4 they make; then the
camera model itself on real robosuite (and real LIBERO where installed), rendered in a spawned child."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from wp_policy.runtime.plan import Plan, Waypoint
from wp_policy.sim.base import SimObservation
from wp_policy.sim.libero_env import libero_missing
from wp_policy.sim.recording import (
    END_HOLD_FRAMES,
    EpisodeRecorder,
    PlanRecord,
    check_video_size,
    frame_shape,
)

RENDER, VIDEO = 64, 128
PLAN_YELLOW, TARGET_CYAN, BANNER_GREEN = (255, 215, 0), (0, 255, 255), (40, 200, 80)


class PlaneCamera:
    """A stand-in camera model: world (x, y, z) -> pixel (32 + 100 x, 32 + 100 y); z < 0 is behind it."""

    def project_points(self, points, view="primary"):
        assert view == "primary"
        pts = np.asarray(points, dtype=np.float64)
        out = 32.0 + 100.0 * pts[:, :2]
        out[pts[:, 2] < 0] = np.nan
        return out


def _obs(step: int, eef_xy=(0.0, 0.0)) -> SimObservation:
    images = {v: np.full((RENDER, RENDER, 3), (60 + step, 60, 90 if v == "wrist" else 60), np.uint8)
              for v in ("primary", "wrist")}
    state = np.array([*eef_xy, 1.0, 3.1, 0.0, 0.0, 0.04, -0.04], np.float32)
    return SimObservation(images, state, "pick up the red cube")


def _plan(points, durations) -> Plan:
    return Plan(tuple(Waypoint(np.array([x, y, 1.0, 3.1, 0, 0, 0.04, -0.04]), d)
                      for (x, y), d in zip(points, durations)), 0)


def _pixel(frame: np.ndarray, xy) -> np.ndarray:
    """Colour of the video pixel showing agentview render pixel ``xy``."""
    scale = VIDEO / RENDER
    header = frame_shape(VIDEO)[0] - VIDEO
    return frame[header + int(xy[1] * scale), int(xy[0] * scale)].astype(int)


def test_plan_records_know_when_each_waypoint_is_due():
    record = PlanRecord.from_plan(4, _plan([(0.1, 0.0), (0.2, 0.0), (0.2, 0.1)], [3, 5, 2]), 8)
    assert record.due_steps.tolist() == [7, 12, 14] and not record.is_stop
    assert [record.target(k) for k in (4, 6, 7, 11, 13, 14)] == [0, 0, 1, 1, 2, None]
    assert record.stop_step is None and record.num_moves == 3
    assert PlanRecord.from_plan(2, _plan([(0.1, 0.0)], [0]), 8).is_stop
    later = PlanRecord.from_plan(2, _plan([(0.1, 0.0), (0.2, 0.0), (0.3, 0.0)], [3, 4, 0]), 8)  # stop after two
    assert not later.is_stop and later.num_moves == 2 and later.stop_step == 9
    assert [later.target(k) for k in (2, 5, 8, 9)] == [0, 1, 1, None]
    empty = PlanRecord.from_plan(2, Plan((), 0), 8)
    assert empty.is_stop and empty.proprio.shape == (0, 8) and empty.target(2) is None and empty.stop_step == 2
    back = PlanRecord.from_json(empty.to_json(), 8)
    assert back.proprio.shape == (0, 8) and back.durations == ()


def test_video_size_must_be_even_and_legible():
    assert check_video_size(256) == 256 and frame_shape(256) == (300, 512) and frame_shape(64)[1] == 128
    for bad in (0, 32, 63, 257, 4096):
        with pytest.raises(ValueError, match="video_size must be an even number of pixels in 64..2048"):
            check_video_size(bad)


def test_frames_show_both_views_the_text_the_plan_and_the_termination(tmp_path):
    recorder = EpisodeRecorder(PlaneCamera(), _libero(), "pick up the red cube", max_steps=20, video_size=VIDEO)
    plan = _plan([(0.1, 0.0), (0.2, 0.0), (0.2, 0.15)], [2, 2, 2])  # pixels (42, 32), (52, 32), (52, 47)
    recorder.add_plan(0, plan)
    for k in range(4):
        recorder.observe(k, _obs(k, (-0.1, -0.1 + 0.02 * k)))  # away from the waypoints
    recorder.observe(4, _obs(4, (-0.1, 0.0)))  # the final observation
    frames = recorder.frames("success")
    assert len(frames) == 5 - 1 + END_HOLD_FRAMES and all(f.shape == (*frame_shape(VIDEO), 3) for f in frames)
    header = frame_shape(VIDEO)[0] - VIDEO
    first, last = frames[0], frames[-1]
    # views side by side: agentview left, wrist right (the stand-in images differ in blue)
    assert first[header + VIDEO - 5, 5, 2] == 60 and first[header + VIDEO - 5, VIDEO + 5, 2] == 90
    # the header holds text that changes with the step; the instruction line is there on every frame
    assert first[:header].std() > 10 and not np.array_equal(frames[0][:header], frames[1][:header])
    # step 0: waypoint 1 is due next (ringed in cyan), 2 and 3 are upcoming (yellow dots)
    assert tuple(_pixel(first, (52, 47))) == PLAN_YELLOW
    ring_radius = 2 * max(3, VIDEO // 48)  # video pixels
    ring = _pixel(first, (42, 32 - ring_radius / (VIDEO / RENDER)))  # the top of the ring around waypoint 1
    assert np.abs(ring - TARGET_CYAN).max() < 60
    # step 3: waypoints 1 (due at 2) passed -> grey; waypoint 2 is now the target
    assert tuple(_pixel(frames[3], (42, 32))) == (150, 150, 150)
    # the final observation is held with the banner; the frames before have none
    assert all(np.array_equal(f, last) for f in frames[-END_HOLD_FRAMES:])
    banner = last[frame_shape(VIDEO)[0] - 12:]
    assert (np.abs(banner.astype(int) - BANNER_GREEN).max(axis=-1) < 40).sum() > 20
    assert not (np.abs(frames[0][frame_shape(VIDEO)[0] - 12:].astype(int) - BANNER_GREEN).max(axis=-1) < 40).any()
    assert recorder.proprio.shape == (5, 8) and recorder.plans[0].durations == (2, 2, 2)

    path = recorder.write_video(tmp_path / "ep.mp4", "success")
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        decoded = np.stack(list(reader.iter_data()))
    assert decoded.shape == (len(frames), *frame_shape(VIDEO), 3)


def test_points_behind_the_camera_and_stop_plans_draw_nothing():
    recorder = EpisodeRecorder(PlaneCamera(), _libero(), "x", max_steps=5, video_size=64)
    recorder.add_plan(0, Plan((Waypoint(np.array([0.1, 0, -1.0, 0, 0, 0, 0, 0]), 2),), 0))  # behind the camera
    recorder.observe(0, _obs(0))
    recorder.add_plan(1, _plan([(0.1, 0.0), (0.25, 0.25)], [2, 0]))  # one waypoint, then a stop marker
    recorder.observe(1, _obs(1, (-0.1, -0.1)))
    recorder.add_plan(2, _plan([(0.1, 0.0)], [0]))  # stop at once
    recorder.observe(2, _obs(2, (-0.1, -0.1)))
    frames = recorder.frames("stopped")
    assert len(frames) == 2 + END_HOLD_FRAMES
    scale, header = 64 / RENDER, frame_shape(64)[0] - 64
    waypoint, marker = frames[1][header + int(32 * scale), int(42 * scale)], frames[1][header + 57, 57]
    assert tuple(waypoint) == PLAN_YELLOW and tuple(marker) == (61, 60, 60)  # the marker's position is not drawn
    assert tuple(frames[-1][header + int(32 * scale), int(42 * scale)]) == (62, 60, 60)  # a stop plan: nothing
    with pytest.raises(ValueError, match="termination must be one of"):
        recorder.frames("crashed")
    without_video = EpisodeRecorder(PlaneCamera(), _libero(), "x", max_steps=5)
    without_video.observe(0, _obs(0))
    with pytest.raises(RuntimeError, match="records no frames"):
        without_video.frames("success")


def test_a_video_needs_both_views():
    recorder = EpisodeRecorder(PlaneCamera(), _libero(), "x", max_steps=5, video_size=64)
    obs = _obs(0)
    with pytest.raises(ValueError, match=r"lacks \['wrist'\] \(is the env rendering\?\)"):
        recorder.observe(0, SimObservation({"primary": obs.images["primary"]}, obs.state, "x"))


def _libero():
    from wp_policy.robot_config import load_robot_config

    return load_robot_config("libero")


# ---- the camera model on real simulators -----------------------------------------------------------------------
def _probe(kind: str) -> dict:
    from projection_probe import probe

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(probe, kind).result(timeout=600)


@pytest.mark.slow
@pytest.mark.sim
def test_projection_matches_the_robosuite_render():
    """The eef at reset lands on the rendered gripper, the cube (moved off-centre, so a mirrored projection would
    miss it) on red pixels, and a point behind the camera is refused."""
    out = _probe("robosuite")
    h, w = out["size"]
    ex, ey = out["eef_xy"]
    assert 0 <= ex < w and 0 <= ey < h
    x0, x1, y0, y1 = out["gripper_box"]  # pixels that change when the gripper's geoms are hidden
    assert x0 - 2 <= ex <= x1 + 2 and y0 - 2 <= ey <= y1 + 2
    cx, cy = out["cube_xy"]
    assert cx < w / 4  # off-centre, to the left in the (LIBERO-rotated) view
    r, g, b = out["cube_pixel"]
    assert r > 100 and r > 2 * g and r > 2 * b  # the red cube
    r, g, b = out["mirrored_pixel"]
    assert not (r > 100 and r > 2 * g)
    assert np.isnan(out["behind_xy"]).all()
    assert "call reset() before project_points()" in out["before_reset"]


@pytest.mark.slow
@pytest.mark.sim
@pytest.mark.skipif(bool(libero_missing()), reason=libero_missing())
def test_projection_matches_the_libero_render():
    out = _probe("libero")
    h, w = out["size"]
    ex, ey = out["eef_xy"]
    x0, x1, y0, y1 = out["gripper_box"]
    assert 0 <= ex < w and 0 <= ey < h
    assert x0 - 2 <= ex <= x1 + 2 and y0 - 2 <= ey <= y1 + 2

