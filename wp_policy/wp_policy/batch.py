"""The data contract between datasets, models, the runtime and the nodes: batch keys and shapes, written once.

All tensors are batch-first torch tensors (numpy arrays before collation). B = batch, V = camera views,
H = W = model image size (224), L = token length, T = horizon (32), A = model_action_dim (32),
P = model_proprio_dim (32). Real robot dims are zero-padded up to A / P; ``DIM_MASK`` marks the real ones.

Images enter the models as ``float32 [B, 3, H, W]`` in [-1, 1] (channels first), one entry per camera
``model_key`` (``base_0_rgb``, ``left_wrist_0_rgb``, ...). Channels-last input is rejected with an explicit error.

Shared by both models:
  IMAGES        dict[model_key -> float32 [B, 3, H, W]]  in [-1, 1]
  IMAGE_MASKS   dict[model_key -> bool [B]]              False: view missing (its tokens are masked out)
  VISION_FEATURES  dict[model_key -> float [B, N, D]]    instead of IMAGES: the vision tower's output for them
                                                         (SigLIP last hidden state, N = (H / patch)^2, D = width),
                                                         precomputed for a frozen tower (``wp-data cache-features``)
  TOKENS        int64 [B, L]                             prompt (AE) or full sequence (VLM), right-padded
  INPUT_MASK    bool [B, L]                              real tokens

Action Expert (AE) batch:
  START_PROPRIO float32 [B, P]   normalised proprio at the pair's start waypoint (zero-padded)
  END_PROPRIO   float32 [B, P]   normalised proprio at the pair's end waypoint
  DURATION      int64 [B]        steps between the two waypoints, 1..32 (0 = stop, never trained on)
  ACTIONS       float32 [B, T, A] normalised actions from the start step, zero after DURATION
  STEP_MASK     bool [B, T]      True for steps < DURATION (valid)
  DIM_MASK      bool [B, A]      True for real action dims

VLM batch (tokens from ``WaypointTokenizer.encode_training``):
  AR_MASK       int32 [B, L]     0 = bidirectional prefix, 1 = causal postfix
  LOSS_MASK     bool [B, L]      CE targets (proprio and duration tokens of real waypoints)
  TARGET_TOKENS int64 [B, L]     optional: the exact sequence the CE targets come from when TOKENS (what the
                                 planner reads) carries noisy earlier waypoints (``data.history_noise``)
"""

IMAGES = "images"
IMAGE_MASKS = "image_masks"
VISION_FEATURES = "vision_features"
TOKENS = "tokens"
INPUT_MASK = "input_mask"
AR_MASK = "ar_mask"
LOSS_MASK = "loss_mask"
TARGET_TOKENS = "target_tokens"
START_PROPRIO = "start_proprio"
END_PROPRIO = "end_proprio"
DURATION = "duration"
ACTIONS = "actions"
STEP_MASK = "step_mask"
DIM_MASK = "dim_mask"

AE_KEYS = (IMAGES, IMAGE_MASKS, TOKENS, INPUT_MASK, START_PROPRIO, END_PROPRIO, DURATION, ACTIONS, STEP_MASK, DIM_MASK)
VLM_KEYS = (IMAGES, IMAGE_MASKS, TOKENS, INPUT_MASK, AR_MASK, LOSS_MASK)

MODEL_ACTION_DIM = 32
MODEL_PROPRIO_DIM = 32
HORIZON = 32
MAX_DURATION = 32  # longest pair the AE fills; the token layout allows durations up to 33
