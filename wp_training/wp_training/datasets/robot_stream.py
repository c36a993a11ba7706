"""RobotSampleStream: a StreamingDataset bound to one robot config, its normalisation stats and the tokenizer.

The AE and VLM datasets share these checks and fields, so a mismatch between the data, the stats, the tokenizer and
the robot fails the same way (and before any episode is read) whichever model is trained.
"""

from __future__ import annotations

from wp_policy.normalize import DatasetStats, load_stats
from wp_policy.robot_config import RobotConfig
from wp_policy.tokenizer import WaypointTokenizer
from wp_policy.transforms import ProprioTransform
from wp_training.datasets.sample_stream import StreamingDataset
from wp_training.engine.feature_cache import FeatureStore


class RobotSampleStream(StreamingDataset):
    """Subclasses call :meth:`bind_robot` in their constructor, after ``StreamingDataset.__init__``."""

    def bind_robot(self, cfg, robot: RobotConfig, tokenizer: WaypointTokenizer,
                   features: FeatureStore | None) -> DatasetStats:
        """Check the tokenizer, the stats and the RLDS against ``robot``; set ``cfg``, ``robot``, ``tokenizer``,
        ``features`` (cached vision features replace the images), ``proprio``, ``image_keys`` (the model's, or the
        robot's cameras) and ``observation_keys`` (no camera is read when features are cached). Returns the stats."""
        if tokenizer.proprio_dim != robot.proprio.dim:
            raise ValueError(f"tokenizer proprio_dim {tokenizer.proprio_dim} != robot proprio dim {robot.proprio.dim}")
        self.cfg, self.robot, self.tokenizer, self.features = cfg, robot, tokenizer, features
        stats = load_stats(cfg.stats_path).check_dims(robot.action.dim, robot.proprio.dim, where=cfg.stats_path)
        self.proprio = ProprioTransform(robot, stats.proprio)
        self.reader.check_robot(robot)
        self.image_keys = cfg.image_keys or tuple(c.model_key for c in robot.cameras)
        cams = () if features is not None else tuple(c.rlds_key for c in robot.cameras)
        self.observation_keys = cams + tuple(robot.state_keys)
        return stats
