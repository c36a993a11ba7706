"""wp_training: produce waypoint VLA checkpoints from RLDS data. Depends on wp_policy, never the other way round."""

__version__ = "0.1.0"
