"""AWE-style waypoint selection (Shi et al. 2023): few frames whose straight-line reconstruction stays in tolerance.

Definitions (docs/training-data.md, "Waypoint extraction"), for one trajectory ``x [N, D]`` (the selected state dims):

- A selection is an increasing index list ``0 = w_0 < w_1 < ... < w_m = N - 1``. Frame 0 is the start anchor and
  is always kept (the first AE pair and the first VLM sample start there); the last frame is forced.
- The error of segment ``(a, b)`` is the largest distance from an interior state ``x_t`` (``a < t < b``) to the
  straight segment ``x_a -> x_b`` (projection clamped to the segment: AWE's position-only metric). ``b = a + 1``
  has error 0, so a valid selection always exists.
- A selection is valid when every segment's error is ``<= threshold``, every segment spans at most
  ``max_segment`` steps (None: no limit) and every forced frame (gripper changes, the last frame) is in it.
- ``dp``: a valid selection with the fewest waypoints. Among equally short ones, each waypoint's predecessor is
  the earliest possible frame (the same rule in the fast and the reference implementation, so outputs compare
  exactly).
- ``greedy``: starting from the forced frames, split every segment at its worst-reconstructed frame until all are
  within the threshold; a segment that is within it but longer than ``max_segment`` is split at its midpoint.
  Splits of different segments do not interact, so this yields exactly the set that AWE's "add the globally worst
  frame until under threshold" loop yields (:func:`reference_greedy`), one pass per recursion depth instead of one
  per added frame.
- ``awe_dp``: AWE's own ``dp_waypoint_selection`` (position-only metric) reproduced exactly, for comparing against
  data extracted with AWE's tool; :func:`reference_awe_dp` is its specification. Its DP places a waypoint ``i``
  after a predecessor ``p`` but measures the segment from ``p + 1`` to ``i``, so the frames between ``p`` and ``i``
  are not checked against the pair ``(p, i)`` that is kept: its sets are smaller than ``dp``'s and may exceed the
  threshold under this module's metric. The returned selection is AWE's set plus frame 0 (the start anchor).

Why ``max_segment`` (default 32 in :mod:`wp_training.data.extract`): a longer pair can neither be filled by the Action
Expert (horizon 32) nor written as a duration token (0..33), and the bound makes the exact DP ``O(N L^2)``
instead of ``O(N^3)``.

Speed: the fast paths pack many episodes into one array and work on all of them at once. Squared distances come
from a banded Gram matrix ``G[p, l] = x_p . x_{p+l}`` (episodes centred first), so the cost per (segment, interior
frame) is a handful of scalar operations whatever D is; the DP then advances all episodes one frame at a time.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

Method = Literal["dp", "greedy", "awe_dp"]
METHODS = ("dp", "greedy", "awe_dp")
_BIG = np.iinfo(np.int64).max // 4
_DEGENERATE = 1e-18  # squared segment length below which a segment counts as a point


def select_waypoints(
    x: np.ndarray,
    threshold: float,
    forced: Sequence[int] = (),
    method: Method = "dp",
    max_segment: int | None = None,
) -> np.ndarray:
    """Waypoint indices (``int64 [m + 1]``, starting at 0 and ending at ``N - 1``) of one trajectory ``x [N, D]``."""
    return select_waypoints_batch([x], [forced], threshold, method, max_segment)[0]


def select_waypoints_batch(
    trajectories: Sequence[np.ndarray],
    forced: Sequence[Sequence[int]],
    threshold: float,
    method: Method = "dp",
    max_segment: int | None = None,
) -> list[np.ndarray]:
    """:func:`select_waypoints` for many episodes at once (much faster than one call per episode)."""
    if method not in METHODS:
        raise ValueError(f"unknown waypoint method {method!r}; use one of {list(METHODS)}")
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(
            f"threshold must be a finite number > 0, got {threshold} (0 would ask floating point to decide exact "
            f"collinearity; use a small positive value)"
        )
    if max_segment is not None and max_segment < 1:
        raise ValueError(f"max_segment must be >= 1 (or None for no limit), got {max_segment}")
    if len(forced) != len(trajectories):
        raise ValueError(f"got {len(trajectories)} trajectories but {len(forced)} forced-frame lists")
    if not trajectories:
        return []
    packed = _Packed.build(trajectories, forced)
    longest = int(packed.lengths.max())
    limit = longest - 1 if max_segment is None else min(max_segment, longest - 1)
    if longest == 1:
        return [np.zeros(1, np.int64) for _ in trajectories]
    if method == "dp":
        return packed.unpack(_dp_select(packed, threshold, limit))
    if method == "awe_dp":
        return packed.unpack(_awe_dp_select(packed, threshold, limit))
    return packed.unpack(_greedy_select(packed, threshold, limit))


def select_job(job: tuple) -> list[np.ndarray]:
    """``select_waypoints_batch(*job)``: a top-level entry point for worker processes (imports only numpy)."""
    return select_waypoints_batch(*job)


def gripper_change_frames(gripper: np.ndarray, level: float = 0.5) -> np.ndarray:
    """Frames ``t`` where a gripper's open/closed state (``value >= level``) differs between ``t`` and ``t + 1``.

    ``gripper [N]`` or ``[N, G]`` in model space (0 = closed, 1 = open). AWE forces the frame before the switch.
    """
    g = np.asarray(gripper, dtype=np.float64)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2:
        raise ValueError(f"gripper values must be [N] or [N, G], got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("gripper values contain NaN or inf")
    state = g >= level
    return np.flatnonzero(np.any(state[1:] != state[:-1], axis=1)).astype(np.int64)


def segment_errors(x: np.ndarray, waypoints: Sequence[int]) -> np.ndarray:
    """Error of each segment of a selection (``float64 [m]``), computed directly (no Gram matrix)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(waypoints, dtype=np.int64)
    out = np.zeros(max(len(w) - 1, 0))
    for s, (a, b) in enumerate(zip(w[:-1], w[1:])):
        if b - a >= 2:
            out[s] = np.sqrt(_point_segment_sq(x[a + 1 : b], x[a], x[b]).max())
    return out


# ---- packing many episodes into one array ----------------------------------------------------------------------
class _Packed:
    """Episodes concatenated into ``x [S, D]`` (each centred), their starts, ``barrier`` and ``limit_end``.

    ``raw [S, D]`` keeps the uncentred values: ``awe_dp`` needs exact equality of frames, which centring can blur.

    ``barrier [S]`` marks the frames every selection must contain besides the start (forced frames, episode ends).

    ``limit_end[p]`` is the furthest frame a segment starting at ``p`` may reach: the next forced frame after ``p``
    or the end of ``p``'s episode, whichever comes first (segments never jump over a forced frame).
    """

    def __init__(self, x, raw, starts, lengths, barrier, limit_end):
        self.x, self.raw, self.starts, self.lengths = x, raw, starts, lengths
        self.barrier, self.limit_end = barrier, limit_end

    @classmethod
    def build(cls, trajectories, forced) -> "_Packed":
        arrays, raws = [], []
        for i, traj in enumerate(trajectories):
            a = np.asarray(traj, dtype=np.float64)
            if a.ndim != 2 or a.shape[0] == 0:
                raise ValueError(f"trajectory {i}: expected a non-empty [N, D] array, got shape {a.shape}")
            if not np.all(np.isfinite(a)):
                rows = np.unique(np.nonzero(~np.isfinite(a))[0])[:5].tolist()
                raise ValueError(f"trajectory {i}: contains NaN or inf (first frames: {rows})")
            if arrays and a.shape[1] != arrays[0].shape[1]:
                raise ValueError(f"trajectory {i}: has {a.shape[1]} dims, trajectory 0 has {arrays[0].shape[1]}")
            raws.append(a)
            arrays.append(a - a.mean(axis=0))
        lengths = np.array([len(a) for a in arrays], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        size = int(lengths.sum())
        barrier = np.zeros(size, bool)
        barrier[starts + lengths - 1] = True
        for i, (f, n) in enumerate(zip(forced, lengths)):
            f = np.asarray(f, dtype=np.int64).reshape(-1)
            if f.size and (f.min() < 0 or f.max() >= n):
                raise ValueError(f"trajectory {i}: forced frames {f.tolist()} out of range for {n} frames")
            barrier[starts[i] + f] = True
        barriers = np.flatnonzero(barrier)
        nxt = np.searchsorted(barriers, np.arange(size), side="right")
        limit_end = barriers[np.minimum(nxt, len(barriers) - 1)]
        episode_end = np.repeat(starts + lengths - 1, lengths)
        limit_end = np.where(nxt < len(barriers), np.minimum(limit_end, episode_end), episode_end)
        return cls(np.concatenate(arrays), np.concatenate(raws), starts, lengths, barrier, limit_end)

    def unpack(self, selected: np.ndarray) -> list[np.ndarray]:
        return [np.flatnonzero(selected[s : s + n]).astype(np.int64) for s, n in zip(self.starts, self.lengths)]


# ---- errors of all short segments at once -----------------------------------------------------------------------
def _band_gram(x: np.ndarray, limit: int) -> np.ndarray:
    """``G [S, limit + 1]`` with ``G[p, l] = x_p . x_{p+l}`` (0 beyond the end), C-contiguous."""
    size = len(x)
    g = np.zeros((size, limit + 1))
    for lag in range(min(limit, size - 1) + 1):
        g[: size - lag, lag] = np.einsum("ij,ij->i", x[: size - lag], x[lag:])
    return g


def _max_sq_errors(x: np.ndarray, limit: int) -> np.ndarray:
    """``E [S, limit + 1]``: ``E[p, k]`` = squared error of segment ``(p, p + k)`` (inf where ``p + k >= S``)."""
    size = len(x)
    g = _band_gram(x, limit)
    err = np.full((size, limit + 1), np.inf)
    err[:, 0] = 0.0
    err[: size - 1, 1] = 0.0
    diag = g[:, 0]
    flat = g.reshape(-1)
    item = g.itemsize
    for k in range(2, limit + 1):
        n = size - k
        if n <= 0:
            break
        g_aa, g_bb, g_ab = diag[:n], diag[k : k + n], g[:n, k]
        g_tt = sliding_window_view(diag[1:], k - 1)[:n]  # x_t . x_t for t = p + 1 .. p + k - 1
        g_ta = g[:n, 1:k]  # x_t . x_a
        g_tb = as_strided(flat[k + limit :], shape=(n, k - 1), strides=((limit + 1) * item, limit * item))  # x_t . x_b
        vv = (g_bb - 2.0 * g_ab + g_aa)[:, None]  # |b - a|^2
        ww = g_tt - 2.0 * g_ta + g_aa[:, None]  # |t - a|^2
        wv = g_tb - g_ta - (g_ab - g_aa)[:, None]  # (t - a) . (b - a)
        uu = g_tt - 2.0 * g_tb + g_bb[:, None]  # |t - b|^2
        safe = np.where(vv > _DEGENERATE, vv, 1.0)
        inner = ww - wv * wv / safe
        d2 = np.where((wv <= 0.0) | (vv <= _DEGENERATE), ww, np.where(wv >= vv, uu, inner))
        err[:n, k] = np.maximum(d2.max(axis=1), 0.0)
    return err


# ---- exact DP ---------------------------------------------------------------------------------------------------
def _dp_select(packed: _Packed, threshold: float, limit: int) -> np.ndarray:
    """Boolean ``[S]``: the frames of each episode's minimal selection."""
    size = len(packed.x)
    err = _max_sq_errors(packed.x, limit)
    lags = np.arange(limit + 1)
    reach = packed.limit_end[:, None] - np.arange(size)[:, None]
    feasible = (err <= threshold * threshold) & (lags[None, :] <= reach) & (lags[None, :] >= 1)
    # end-indexed: ending[j, k] says segment (j - k, j) is allowed
    ending = np.zeros_like(feasible)
    for k in range(1, limit + 1):
        ending[k:, k] = feasible[: size - k, k]
    back = _dp_backpointers(ending, packed.starts, packed.lengths, limit)
    return _trace(back, packed.starts, packed.lengths)


def _dp_backpointers(ending: np.ndarray, starts: np.ndarray, lengths: np.ndarray, limit: int) -> np.ndarray:
    """``back[j]`` = predecessor of frame j on a fewest-waypoint path; all episodes advance one frame per step.

    A frame no allowed segment reaches keeps ``back = -1`` (never in ``dp``, where ``(j - 1, j)`` is always
    allowed; ``awe_dp`` has such frames).
    """
    order = np.argsort(-lengths, kind="stable")  # longest first: the episodes still running form a prefix
    starts_o, lengths_o = starts[order], lengths[order]
    count = np.zeros(len(ending), np.int64)
    back = np.full(len(ending), -1, np.int64)
    lags = np.arange(limit, 0, -1)  # longest segment first, so argmin picks the earliest predecessor on ties
    for j in range(1, int(lengths_o[0])):
        active = int(np.searchsorted(-lengths_o, -j, side="left"))  # episodes with length > j
        ends = starts_o[:active] + j
        preds = ends[:, None] - lags[None, :]
        ok = ending[ends][:, lags] & (preds >= starts_o[:active, None])
        cost = np.where(ok, count[np.maximum(preds, 0)], _BIG)
        best = np.argmin(cost, axis=1)
        rows = np.arange(active)
        reached = cost[rows, best] < _BIG
        count[ends] = np.where(reached, cost[rows, best] + 1, _BIG)
        back[ends] = np.where(reached, preds[rows, best], -1)
    return back


def _trace(back: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The frames on each episode's path from its last frame back to its start (just the start if it is unreached)."""
    selected = np.zeros(len(back), bool)
    ends = starts + lengths - 1
    cur = np.where((back[ends] >= 0) | (lengths == 1), ends, starts)
    selected[cur] = True
    while np.any(cur > starts):
        cur = np.where(cur > starts, back[cur], cur)
        selected[cur] = True
    return selected


# ---- AWE's DP (awe_dp) ------------------------------------------------------------------------------------------
def _equal_band(raw: np.ndarray, limit: int) -> np.ndarray:
    """``E [S, limit + 1]``: ``E[p, l]`` = frames ``p`` and ``p + l`` are exactly equal (False beyond the end)."""
    size = len(raw)
    eq = np.zeros((size, limit + 1), bool)
    for lag in range(min(limit, size - 1) + 1):
        eq[: size - lag, lag] = np.all(raw[: size - lag] == raw[lag:], axis=1)
    return eq


def _awe_dp_select(packed: _Packed, threshold: float, limit: int) -> np.ndarray:
    """Boolean ``[S]``: AWE's set of each episode, its forced frames and frame 0 (see :func:`reference_awe_dp`).

    Waypoint ``i`` with predecessor ``p`` (a gap ``i - p <= limit``) is allowed when AWE accepts the segment
    ``(p + 1, i)``: cut at the forced frames inside it, every sub-segment ``(a, b)`` has distinct end frames (AWE's
    0/0 projection gives NaN otherwise, which fails its test) and all frames ``a .. b - 1`` lie strictly closer
    than ``threshold`` to it. A sub-segment between two forced frames is the same whatever the segment, so its
    verdict is counted once (``bad_before``) and a segment checks only its head, the forced run and its tail.
    """
    size = len(packed.x)
    span = max(limit - 1, 1)  # the longest segment (p + 1, i)
    accept = (_max_sq_errors(packed.x, span) < threshold * threshold) & ~_equal_band(packed.raw, span)
    forced = np.flatnonzero(packed.barrier)  # forced frames and episode ends (an end never lies inside a segment)
    first_at = np.searchsorted(forced, np.arange(size), side="left")  # index of the first forced frame >= frame
    gaps = np.diff(forced)
    pair_ok = np.zeros(len(gaps), bool)
    short = gaps <= span
    pair_ok[short] = accept[forced[:-1][short], gaps[short]]
    bad_before = np.concatenate([[0], np.cumsum(~pair_ok)])  # bad forced-to-forced sub-segments before index m
    ending = np.zeros((size, limit + 1), bool)
    for lag in range(2, limit + 1):
        seg = lag - 1
        i = np.arange(seg, size)
        k = i - seg
        head_idx = np.minimum(first_at[k], len(forced) - 1)
        head_end = forced[head_idx]  # the first forced frame >= k
        inside = head_end < i
        tail_idx = np.maximum(first_at[i] - 1, 0)
        tail_start = forced[tail_idx]  # the last forced frame < i (when inside)
        head_ok = (head_end == k) | accept[k, np.clip(head_end - k, 0, span)]
        run_ok = bad_before[tail_idx] == bad_before[head_idx]
        tail_ok = accept[tail_start, np.clip(i - tail_start, 0, span)]
        ending[seg:, lag] = np.where(inside, head_ok & run_ok & tail_ok, accept[k, seg])
    selected = _trace(_dp_backpointers(ending, packed.starts, packed.lengths, limit), packed.starts, packed.lengths)
    return selected | packed.barrier


# ---- greedy (recursive split) -----------------------------------------------------------------------------------
def _greedy_select(packed: _Packed, threshold: float, limit: int) -> np.ndarray:
    x = packed.x
    selected = packed.barrier.copy()
    selected[packed.starts] = True
    episode_of = np.repeat(np.arange(len(packed.starts)), packed.lengths)
    anchors = np.flatnonzero(selected)
    same = episode_of[anchors[:-1]] == episode_of[anchors[1:]]
    seg_a, seg_b = anchors[:-1][same], anchors[1:][same]
    thr2 = threshold * threshold
    while True:
        open_ = seg_b - seg_a >= 2
        seg_a, seg_b = seg_a[open_], seg_b[open_]
        if seg_a.size == 0:
            return selected
        worst, worst_err = _worst_interior(x, seg_a, seg_b)
        too_long = seg_b - seg_a > limit
        split = (worst_err > thr2) | too_long
        at = np.where(worst_err > thr2, worst, (seg_a + seg_b) // 2)[split]
        selected[at] = True
        seg_a = np.concatenate([seg_a[split], at])
        seg_b = np.concatenate([at, seg_b[split]])


def _worst_interior(x: np.ndarray, seg_a: np.ndarray, seg_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each segment: its worst interior frame (first on ties) and that frame's squared error."""
    n_inner = seg_b - seg_a - 1
    offsets = np.concatenate([[0], np.cumsum(n_inner)[:-1]])
    seg = np.repeat(np.arange(len(seg_a)), n_inner)
    t = seg_a[seg] + 1 + (np.arange(int(n_inner.sum())) - offsets[seg])
    d2 = _point_segment_sq(x[t], x[seg_a[seg]], x[seg_b[seg]])
    best = np.maximum.reduceat(d2, offsets)
    pos = np.where(d2 == best[seg], np.arange(len(d2)), len(d2))
    first = np.minimum.reduceat(pos, offsets)
    return t[first], best


def _point_segment_sq(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distance from points ``p [..., D]`` to segments ``a -> b`` (broadcast), projection clamped."""
    v = b - a
    w = p - a
    vv = np.sum(v * v, axis=-1)
    t = np.where(vv > _DEGENERATE, np.sum(w * v, axis=-1) / np.where(vv > _DEGENERATE, vv, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    r = w - t[..., None] * v
    return np.sum(r * r, axis=-1)


# ---- readable references (the specification the fast paths are tested and benchmarked against) -----------------
def reference_segment_error(x: np.ndarray, a: int, b: int) -> float:
    """Error of segment ``(a, b)``, one interior frame at a time."""
    worst = 0.0
    for t in range(a + 1, b):
        v, w = x[b] - x[a], x[t] - x[a]
        vv = float(v @ v)
        s = min(max(float(w @ v) / vv, 0.0), 1.0) if vv > _DEGENERATE else 0.0
        worst = max(worst, float(np.linalg.norm(w - s * v)))
    return worst


def reference_dp(
    x: np.ndarray, threshold: float, forced: Sequence[int] = (), max_segment: int | None = None
) -> np.ndarray:
    """The O(N^3) DP over all segments: ``best[j] = 1 + min best[i]`` over valid segments ``(i, j)``."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    barriers = sorted(set(int(f) for f in forced) | {n - 1})
    best, prev = [0] + [None] * (n - 1), [-1] * n
    for j in range(1, n):
        for i in range(j):  # ascending with a strict improvement test: ties keep the earliest predecessor
            if max_segment is not None and j - i > max_segment:
                continue
            if any(i < f < j for f in barriers) or best[i] is None:
                continue
            if reference_segment_error(x, i, j) <= threshold and (best[j] is None or best[i] + 1 < best[j]):
                best[j], prev[j] = best[i] + 1, i
    path = [n - 1]
    while path[-1] > 0:
        path.append(prev[path[-1]])
    return np.array(path[::-1], np.int64)


def reference_greedy(
    x: np.ndarray, threshold: float, forced: Sequence[int] = (), max_segment: int | None = None
) -> np.ndarray:
    """AWE's greedy loop: add the globally worst-reconstructed frame until every frame is within the threshold."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    chosen = sorted(set(int(f) for f in forced) | {0, n - 1})
    while True:
        worst_err, worst_t = threshold, None
        for a, b in zip(chosen[:-1], chosen[1:]):
            for t in range(a + 1, b):
                e = float(np.sqrt(_point_segment_sq(x[t], x[a], x[b])))
                if e > worst_err:
                    worst_err, worst_t = e, t
        if worst_t is None:
            long = [(a, b) for a, b in zip(chosen[:-1], chosen[1:]) if max_segment is not None and b - a > max_segment]
            if not long:
                return np.array(chosen, np.int64)
            worst_t = (long[0][0] + long[0][1]) // 2
        chosen = sorted(chosen + [worst_t])


def _awe_point_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """AWE's clamped point-to-segment distance; NaN when ``a == b`` (its projection divides 0 by 0)."""
    v = b - a
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.clip(np.dot(p - a, v) / np.dot(v, v), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + s * v)))


def reference_awe_error(x: np.ndarray, k: int, i: int, forced: Sequence[int] = ()) -> float:
    """AWE's error of the segment ``(k, i)``: cut at the forced frames ``k <= j < i``, the largest distance of
    frames ``a .. b - 1`` to each sub-segment ``(a, b)`` (NaN propagates, so a zero-length sub-segment fails)."""
    cuts = sorted({k, i} | {int(j) for j in forced if k <= j < i})
    errors = [_awe_point_distance(x[t], x[a], x[b]) for a, b in zip(cuts[:-1], cuts[1:]) for t in range(a, b)]
    return float(np.max(errors))


def reference_awe_dp(
    x: np.ndarray, threshold: float, forced: Sequence[int] = (), max_segment: int | None = None
) -> np.ndarray:
    """AWE's ``dp_waypoint_selection`` (lucys0/awe, position-only metric), as its code runs, in float64.

    Frames ``0 .. N-1``; ``forced`` gets ``N - 1`` added (AWE adds the gripper-change frames only when not
    ``pos_only``; here they are whatever the caller passes). ``best[0] = (0, [])``. For ``i = 1 .. N-1`` and
    ``k = 1 .. i-1`` (ascending) the segment ``(k, i)`` is accepted when :func:`reference_awe_error` is strictly
    below ``threshold``, proposing ``(1 + best[k-1].count, best[k-1].set + [i])``; the first strictly smaller
    count wins, and no accepted proposal leaves ``best[i] = (inf, [])``. AWE initialises ``best[1] = (1, [1])``,
    but its ``i = 1`` pass (no ``k``) overwrites that with ``(inf, [])``, so frame 1 is never a DP waypoint.
    Result: ``best[N-1].set`` united with the forced frames, sorted (frame 0 is not in it). ``max_segment``
    (not AWE's) limits the gap ``i - (k - 1)``; ``None`` is AWE.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    forced_all = sorted({int(f) for f in forced} | {n - 1})
    count, sets = [0.0] + [np.inf] * (n - 1), [[]] + [[] for _ in range(n - 1)]
    for i in range(1, n):
        best, chosen = np.inf, []
        for k in range(1, i):
            if max_segment is not None and i - (k - 1) > max_segment:
                continue
            if reference_awe_error(x, k, i, forced_all) < threshold and 1 + count[k - 1] < best:
                best, chosen = 1 + count[k - 1], sets[k - 1] + [i]
        count[i], sets[i] = best, chosen
    return np.array(sorted(set(sets[n - 1]) | set(forced_all)), np.int64)
