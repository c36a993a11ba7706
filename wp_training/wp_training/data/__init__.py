"""Data preparation: RLDS reading and writing, recordings and LeRobot sets -> RLDS, waypoint extraction, statistics
and small tokenizers (the ``wp-data`` commands except ``collect-sim`` and ``cache-features``)."""
