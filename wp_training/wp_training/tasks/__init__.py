"""Training modes: the interface a mode implements for the trainer (``TrainTask``, ``get_task``), what the
PaliGemma-based modes share, and the two modes ``ae`` and ``vlm``."""
