"""collect-sim's attempt cache: every finished expert attempt on disk, so an interrupted collection continues.

A collection of hundreds of rendered demonstrations takes hours on a small CPU, and the RLDS is written only at the
end. Attempt ``i`` of a task is fully determined by the collection's settings (its seed, init state and missed-grasp
draw come from ``i``), so a finished attempt can be replayed from disk instead of simulated again, and a resumed run
keeps exactly the episodes an uninterrupted one would. The cache lives in ``<out>/.collect_cache/``; it belongs to
one set of settings (``settings.json``): other settings discard it with a message, and a completed collection
removes it. Files are ``.npz`` (arrays + a JSON header), written to a temporary name and renamed, never pickles.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from wp_training.sim_demos.scripted_expert import ExpertEpisode

CACHE_DIR = ".collect_cache"
SETTINGS_FILE = "settings.json"
_IMAGE_PREFIX = "image__"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class AttemptCache:
    """Finished attempts of one collection, keyed by (task, attempt index)."""

    def __init__(self, out_dir: str | Path, settings: dict):
        self.root = Path(out_dir) / CACHE_DIR
        self.settings = json.loads(json.dumps(settings))  # as it reads back from disk
        self.reused = 0
        stored = self.root / SETTINGS_FILE
        if self.root.exists():
            previous = json.loads(stored.read_text()) if stored.is_file() else None
            if previous != self.settings:
                print(f"collect-sim: discarding the attempt cache in {self.root} (made with other settings)")
                shutil.rmtree(self.root)
            else:
                print(f"collect-sim: resuming, {len(list(self.root.glob('*/*.npz')))} finished attempts in "
                      f"{self.root}")
        self.root.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps(self.settings, indent=1, sort_keys=True) + "\n")

    def _path(self, task: str, attempt: int) -> Path:
        return self.root / _safe(task) / f"attempt_{attempt:06d}.npz"

    def get(self, task: str, attempt: int) -> ExpertEpisode | None:
        path = self._path(task, attempt)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            images = {k[len(_IMAGE_PREFIX):]: data[k] for k in data.files if k.startswith(_IMAGE_PREFIX)}
            episode = ExpertEpisode(images=images, states=data["states"], actions=data["actions"], **header)
        self.reused += 1
        return episode

    def put(self, attempt: int, episode: ExpertEpisode) -> None:
        path = self._path(episode.task, attempt)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"task": episode.task, "seed": episode.seed, "instruction": episode.instruction,
                  "success": bool(episode.success), "regrasps": int(episode.regrasps),
                  "init_state": episode.init_state, "missed_grasp": bool(episode.missed_grasp),
                  "pushed_steps": int(episode.pushed_steps)}
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, header=np.array(json.dumps(header)), states=episode.states, actions=episode.actions,
                 **{_IMAGE_PREFIX + view: frames for view, frames in episode.images.items()})
        tmp.replace(path)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
