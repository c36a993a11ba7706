"""What explains an episode afterwards: the executed proprio of every step, every plan with the step it was made
at, and the episode video.

The direct loop (:func:`wp_policy.sim.rollout.run_episode`) and the LIBERO bridge node both fill an
:class:`EpisodeRecorder`, so a ``wp-eval`` video and a ROS-graph (``make demo``) video look the same. A video frame
shows agentview and wrist side by side at ``video_size`` pixels each (renders are scaled up, the text is drawn at
the video's size so it stays legible), a header with the step, the current plan and the instruction, and in the
agentview image the executed end-effector path (white) and the current plan (yellow: a line from where the plan
was made through its waypoints, numbered; the waypoint due next ringed in cyan, passed ones grey). Waypoints are
the plans' end-effector positions (physical proprio, world frame, as the env reports its state) projected with the
simulator's camera model (:meth:`wp_policy.sim.base.SimEnv.project_points`). The final observation stays on
screen for one second with the termination in a coloured banner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wp_policy.robot_config import RobotConfig
from wp_policy.runtime.plan import Plan
from wp_policy.sim.base import SimEnv, SimObservation
from wp_policy.sim.conventions import EEF_POS_DIMS
from wp_policy.sim.protocol import VIDEO_FPS

VIDEO_SIZE = 256  # pixels per view in the video (each view is square)
MIN_VIDEO_SIZE = 64  # below this the header text no longer fits
MAX_VIDEO_SIZE = 2048
END_HOLD_FRAMES = VIDEO_FPS  # the final observation is shown this many frames (1 s) with the termination
VIDEO_VIEWS = ("primary", "wrist")  # left: agentview (the overlay goes here), right: the wrist camera
TERMINATIONS = ("success", "stopped", "max_steps")
TERMINATION_TEXT = {"success": "success: task solved", "stopped": "stopped: the policy predicted stop",
                    "max_steps": "max_steps: step budget spent"}
_BANNER_COLOUR = {"success": (40, 200, 80), "stopped": (255, 160, 0), "max_steps": (235, 60, 60)}
_PLAN, _TARGET, _PASSED, _TRACE = (255, 215, 0), (0, 255, 255), (150, 150, 150), (255, 255, 255)


def check_video_size(size: int) -> int:
    """``size`` if it is a usable video size (an even number of pixels per view, legible text), else ValueError."""
    if not MIN_VIDEO_SIZE <= size <= MAX_VIDEO_SIZE or size % 2:
        raise ValueError(f"video_size must be an even number of pixels in {MIN_VIDEO_SIZE}..{MAX_VIDEO_SIZE}, "
                         f"got {size}")
    return size


def _text_metrics(size: int) -> tuple[int, int, int]:
    """(font px, line height, padding) of the text in a video with ``size``-pixel views."""
    font_px = max(11, round(size / 18))
    return font_px, round(font_px * 1.3), max(3, font_px // 3)


def frame_shape(video_size: int) -> tuple[int, int]:
    """(height, width) of a video frame: a two-line header above two square views side by side (both even)."""
    _, line_h, pad = _text_metrics(check_video_size(video_size))
    header = 2 * line_h + 2 * pad
    return video_size + header + header % 2, 2 * video_size


@dataclass(frozen=True, eq=False)
class PlanRecord:
    """One plan as the episode used it. Compare with :meth:`to_json` (arrays have no plain ``==``)."""

    step: int  # policy step whose observation the plan was made from
    proprio: np.ndarray  # float64 [n, P]: the waypoints in physical units
    durations: tuple[int, ...]  # ticks from the previous waypoint (the first: from ``step``); 0 = stop

    @classmethod
    def from_plan(cls, step: int, plan: Plan, proprio_dim: int) -> PlanRecord:
        rows = [w.proprio for w in plan.waypoints]
        proprio = np.stack(rows).astype(np.float64) if rows else np.zeros((0, proprio_dim))
        return cls(int(step), proprio, tuple(int(w.duration) for w in plan.waypoints))

    @property
    def is_stop(self) -> bool:
        return not self.durations or self.durations[0] == 0

    @property
    def num_moves(self) -> int:
        """Waypoints the arm moves to: those before a stop marker (d = 0), whose position is never executed."""
        return next((i for i, d in enumerate(self.durations) if d == 0), len(self.durations))

    @property
    def stop_step(self) -> int | None:
        """The step at which the plan stops the robot (its stop marker is due), None for a plan without one."""
        if self.num_moves == len(self.durations) and self.durations:
            return None
        return int(self.due_steps[self.num_moves]) if self.durations else self.step

    @property
    def due_steps(self) -> np.ndarray:
        """Policy step at which each waypoint is due (``step + d_1 + .. + d_i``)."""
        return self.step + np.cumsum(np.asarray(self.durations, dtype=np.int64))

    def target(self, step: int) -> int | None:
        """Index of the waypoint due next at ``step`` (None once every waypoint to move to is due, or for a stop)."""
        ahead = np.flatnonzero(self.due_steps[: self.num_moves] > step)
        return int(ahead[0]) if ahead.size else None

    def to_json(self) -> dict:
        return {"step": self.step, "proprio": self.proprio.tolist(), "durations": list(self.durations)}

    @classmethod
    def from_json(cls, data: dict, proprio_dim: int = 0) -> PlanRecord:
        proprio = np.asarray(data["proprio"], dtype=np.float64)
        if proprio.size == 0:
            proprio = proprio.reshape(0, proprio_dim)
        return cls(int(data["step"]), proprio, tuple(int(d) for d in data["durations"]))


def eef_dims(robot: RobotConfig) -> list[int] | None:
    """Proprio dims holding the simulator's eef position (world frame), or None when the robot leaves one out."""
    indices = list(robot.proprio.indices)
    if not all(i in indices for i in EEF_POS_DIMS):
        return None
    return [indices.index(i) for i in EEF_POS_DIMS]


@dataclass(frozen=True, eq=False)
class _Frame:
    step: int
    images: dict  # view -> uint8 [H, W, 3] as rendered
    eef_xy: np.ndarray  # [2] agentview pixel of the eef (NaN: not projectable)
    plan: int | None  # index into the recorder's plans (None: no plan yet)
    plan_xy: np.ndarray | None  # [1 + n, 2]: where the plan was made, then its waypoints
    target: int | None


class EpisodeRecorder:
    """Collects one episode's proprio, plans and (with ``video_size``) video frames.

    Call :meth:`add_plan` for every plan loaded at policy step ``k`` and then :meth:`observe` once per policy step
    with the observation the step's action was computed from, plus once with the final observation (unless the
    episode stopped: the stop tick's observation is already the last). The trace is what ``wp-eval plot`` draws.
    """

    def __init__(self, env: SimEnv, robot: RobotConfig, instruction: str, max_steps: int,
                 video_size: int | None = None):
        self.env, self.robot, self.instruction, self.max_steps = env, robot, instruction, max_steps
        self.video_size = None if video_size is None else check_video_size(video_size)
        self._eef = eef_dims(robot)
        self._proprio: list[np.ndarray] = []
        self._plans: list[PlanRecord] = []
        self._frames: list[_Frame] = []

    @property
    def proprio(self) -> np.ndarray:
        """float64 [observed steps, P]: the proprio of each observation, in step order."""
        if not self._proprio:
            return np.zeros((0, self.robot.proprio.dim))
        return np.stack(self._proprio)

    @property
    def plans(self) -> tuple[PlanRecord, ...]:
        return tuple(self._plans)

    def add_plan(self, step: int, plan: Plan) -> None:
        self._plans.append(PlanRecord.from_plan(step, plan, self.robot.proprio.dim))

    def observe(self, step: int, obs: SimObservation) -> None:
        proprio = np.asarray(self.robot.select_proprio(obs.state), dtype=np.float64)
        self._proprio.append(proprio)
        if self.video_size is None:
            return
        missing = [v for v in VIDEO_VIEWS if v not in obs.images]
        if missing:
            raise ValueError(f"a video needs the views {list(VIDEO_VIEWS)}; the observation lacks {missing} "
                             "(is the env rendering?)")
        eef_xy, plan_xy, target = np.full(2, np.nan), None, None
        plan = len(self._plans) - 1 if self._plans else None
        if self._eef is not None:
            record = self._plans[plan] if plan is not None else None
            points = [proprio[self._eef]]
            if record is not None and not record.is_stop:
                start = self._proprio[record.step] if record.step < len(self._proprio) else proprio
                points += [start[self._eef], *record.proprio[: record.num_moves, self._eef]]
            xy = self._project(np.stack(points))
            eef_xy = xy[0]
            if len(points) > 1:
                plan_xy, target = xy[1:], record.target(step)
        images = {v: obs.images[v] for v in VIDEO_VIEWS}
        self._frames.append(_Frame(step, images, eef_xy, plan, plan_xy, target))

    def _project(self, points: np.ndarray) -> np.ndarray:
        try:
            return self.env.project_points(points, VIDEO_VIEWS[0])
        except NotImplementedError:  # an env without a camera model: a video without the overlay
            self._eef = None
            return np.full((len(points), 2), np.nan)

    def frames(self, termination: str) -> list[np.ndarray]:
        """The composed video frames; the last observation repeated to ``END_HOLD_FRAMES`` with the banner."""
        if self.video_size is None:
            raise RuntimeError("this recorder was made without a video_size; it records no frames")
        if termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {list(TERMINATIONS)}, got {termination!r}")
        if not self._frames:
            raise ValueError("no observation was recorded")
        painter = _Painter(self.video_size, self.instruction, self.max_steps)
        trace = np.stack([f.eef_xy for f in self._frames])
        out = [painter.compose(f, trace[: i + 1], self._plans) for i, f in enumerate(self._frames[:-1])]
        last = painter.compose(self._frames[-1], trace, self._plans, termination)
        return out + [last] * END_HOLD_FRAMES

    def write_video(self, path: str | Path, termination: str) -> Path:
        return write_video(self.frames(termination), path)


class _Painter:
    """Draws frames at one video size (PIL; fonts scaled with the size so text stays legible)."""

    def __init__(self, size: int, instruction: str, max_steps: int):
        from PIL import ImageFont

        self.size, self.instruction, self.max_steps = size, instruction, max_steps
        font_px, self.line_h, self.pad = _text_metrics(size)
        self.font = ImageFont.load_default(size=font_px)
        self.small = ImageFont.load_default(size=max(10, round(font_px * 0.8)))
        self.header = frame_shape(size)[0] - size

    def compose(self, frame: _Frame, trace: np.ndarray, plans: Sequence[PlanRecord],
                termination: str | None = None) -> np.ndarray:
        from PIL import Image, ImageDraw

        s = self.size
        canvas = Image.new("RGB", (2 * s, s + self.header), (20, 20, 20))
        for i, view in enumerate(VIDEO_VIEWS):
            panel = Image.fromarray(frame.images[view])
            scale = s / panel.width
            if panel.size != (s, s):
                panel = panel.resize((s, s), Image.BILINEAR)
            if i == 0:
                self._overlay(ImageDraw.Draw(panel), frame, trace * scale,
                              None if frame.plan_xy is None else frame.plan_xy * scale)
            canvas.paste(panel, (i * s, self.header))
        draw = ImageDraw.Draw(canvas)
        for i, name in enumerate(("agentview", "wrist")):
            draw.text((i * s + self.pad, self.header + self.pad), name, font=self.small, fill=(255, 255, 255),
                      stroke_width=2, stroke_fill=(0, 0, 0))
        step = f"step {frame.step}/{self.max_steps}"
        draw.text((self.pad, self.pad), step, font=self.font, fill=(255, 255, 255))
        status = self._fit(draw, self._plan_text(frame, plans),
                           2 * s - 3 * self.pad - draw.textlength(step + "  ", font=self.font))
        draw.text((2 * s - self.pad - draw.textlength(status, font=self.font), self.pad), status, font=self.font,
                  fill=_PLAN)
        draw.text((self.pad, self.pad + self.line_h), self._fit(draw, self.instruction, 2 * s - 2 * self.pad),
                  font=self.font, fill=(210, 210, 210))
        if termination is not None:
            text = f"END  {TERMINATION_TEXT[termination]}"
            box_h = self.line_h + 2 * self.pad
            top = self.header + s - box_h
            draw.rectangle((0, top, 2 * s, self.header + s), fill=(0, 0, 0))
            draw.text((self.pad, top + self.pad), self._fit(draw, text, 2 * s - 2 * self.pad), font=self.font,
                      fill=_BANNER_COLOUR[termination])
        return np.asarray(canvas, dtype=np.uint8)

    @staticmethod
    def _plan_text(frame: _Frame, plans: Sequence[PlanRecord]) -> str:
        if frame.plan is None:
            return "no plan yet"
        record = plans[frame.plan]
        head, n = f"plan {frame.plan + 1} (step {record.step})", record.num_moves
        then_stop = n < len(record.durations)
        if frame.target is not None:
            return f"{head}: waypoint {frame.target + 1}/{n}{', then stop' if then_stop else ''}"
        return f"{head}: stop" if then_stop or record.is_stop else f"{head}: all {n} waypoints due"

    def _fit(self, draw, text: str, width: float) -> str:
        """``text`` cut with an ellipsis to fit ``width`` pixels."""
        if draw.textlength(text, font=self.font) <= width:
            return text
        while text and draw.textlength(text + "...", font=self.font) > width:
            text = text[:-1]
        return text + "..."

    def _overlay(self, draw, frame: _Frame, trace: np.ndarray, plan_xy: np.ndarray | None) -> None:
        s = self.size
        width = max(1, s // 128)
        _polyline(draw, trace, _TRACE, width)
        if plan_xy is not None:
            _polyline(draw, plan_xy, _PLAN, max(2, s // 100))
            r = max(3, s // 48)
            for i, (x, y) in enumerate(plan_xy[1:]):
                if not np.isfinite(x):
                    continue
                passed = frame.target is None or i < frame.target
                draw.ellipse((x - r, y - r, x + r, y + r), fill=_PASSED if passed else _PLAN, outline=(0, 0, 0))
                if i == frame.target:
                    R = 2 * r
                    draw.ellipse((x - R, y - R, x + R, y + R), outline=_TARGET, width=max(2, s // 128))
                draw.text((x + r + 1, y - r - self.small.size), str(i + 1), font=self.small, fill=(255, 255, 255),
                          stroke_width=2, stroke_fill=(0, 0, 0))
        x, y = trace[-1]
        if np.isfinite(x):
            r = max(2, s // 80)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=_TRACE, outline=(0, 0, 0))


def _polyline(draw, xy: np.ndarray, colour, width: int) -> None:
    """Segments between consecutive finite points (a point behind the camera breaks the line)."""
    for a, b in zip(xy[:-1], xy[1:]):
        if np.all(np.isfinite(a)) and np.all(np.isfinite(b)):
            draw.line((*a, *b), fill=colour, width=width)


def write_video(frames: Sequence[np.ndarray] | Iterable[np.ndarray], path: str | Path, fps: int = VIDEO_FPS) -> Path:
    """Encode uint8 [H, W, 3] frames as an MP4 (libx264, yuv420p) at ``fps``; returns the path."""
    import imageio.v2 as imageio

    frames = list(frames)
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    shape = frames[0].shape
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3 or f.shape != shape:
            raise ValueError(f"frame {i} must be uint8 {shape}, got {f.dtype} {f.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # yuv420p (what players expect) needs even sizes: macro_block_size=2 pads odd ones, leaves even ones alone
    with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=2, pixelformat="yuv420p",
                            ffmpeg_log_level="error") as writer:
        for f in frames:
            writer.append_data(f)
    return path
