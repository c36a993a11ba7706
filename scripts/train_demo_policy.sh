#!/usr/bin/env bash
# Rebuild the shipped default policy wp_policy/wp_policy/assets/policies/lift_demo/ from scratch with this
# project's own commands: scripted Lift demos -> waypoints -> stats -> tokenizer -> AE + VLM training -> export.
# Work data goes to $WORK (default /tmp/wp_demo), never into the repo; only the exported files are committed.
#
# Usage: scripts/train_demo_policy.sh [--help] [STAGE ...]
#   stages (default: all, in this order): collect waypoints stats tokenizer train export eval
#   (train = ae, vlm, then vlm_refine, one after the other with every core: on 2 cores the VLM steps 1.5x
#    faster alone on 2 threads than on 1 thread beside the AE; each of ae / vlm / vlm_refine also runs alone)
# Environment:
#   WORK=/tmp/wp_demo       work directory (datasets, runs, logs, stage timings)
#   EPISODES=500            successful scripted Lift demonstrations to collect
#   POST_SUCCESS_STEPS=12   expert steps recorded past success (so the planner's stop lands above the success line)
#   IMAGE_SIZE=128          camera render size of the demos and of the eval (models resize to 96 px VLM, 64 px AE)
#   COLLECT_WORKERS=2       rendering processes for collect-sim
#   EVAL_EPISODES=50        seeded Lift episodes for the eval stage
#   OUT=wp_policy/wp_policy/assets/policies/lift_demo       export directory
#   REFINE_STEPS=5000       VLM steps of a second cosine cycle warm-started from the first VLM run (0: none)
#   AE_ARGS= VLM_ARGS=      extra wp-train overrides, e.g. AE_ARGS="num_steps=10" (smoke runs; VLM_ARGS apply
#                           to both VLM cycles)
#   PY=.venv/bin/python
# Timings of every stage are appended to $WORK/timings.tsv (stage, seconds, date).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
WORK="${WORK:-/tmp/wp_demo}"
EPISODES="${EPISODES:-500}"
POST_SUCCESS_STEPS="${POST_SUCCESS_STEPS:-12}"
IMAGE_SIZE="${IMAGE_SIZE:-128}"
COLLECT_WORKERS="${COLLECT_WORKERS:-2}"
EVAL_EPISODES="${EVAL_EPISODES:-50}"
REFINE_STEPS="${REFINE_STEPS:-5000}"
OUT="${OUT:-$ROOT/wp_policy/wp_policy/assets/policies/lift_demo}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"

DEMOS="$WORK/demos"                      # collect-sim output
RLDS="$DEMOS/sim_lift/1.0.0"             # LIBERO-layout RLDS of the demos
WP="$WORK/waypoints"                     # waypoint_indices.json + waypoint-filtered RLDS + plots
WP_RLDS="$WP/waypoint_filtered_rlds__libero/1.0.0"
STATS="$WORK/dataset_statistics.json"
TOKENIZER="$WORK/tokenizer.model"
AE_RUN="$WORK/runs/ae"
VLM_RUN="$WORK/runs/vlm"
VLM_REFINE_RUN="$WORK/runs/vlm_refine"
AE_CONFIG="configs/train/demo_ae_lift.yaml"
VLM_CONFIG="configs/train/demo_vlm_lift.yaml"
EVAL_CONFIG="configs/eval/eval_lift.yaml"

AE_ARGS="${AE_ARGS:-}"
VLM_ARGS="${VLM_ARGS:-}"

STAGES=("$@")
[[ ${#STAGES[@]} -eq 0 ]] && STAGES=(collect waypoints stats tokenizer train export eval)
mkdir -p "$WORK"

run_stage() {  # run_stage NAME: time one stage and log it
    local name="$1" start end
    echo "=== stage $name ($(date -u +%H:%M:%S) UTC)"
    start=$(date +%s)
    "stage_$name"
    end=$(date +%s)
    printf '%s\t%s\t%s\n' "$name" "$((end - start))" "$(date -u +%FT%TZ)" >> "$WORK/timings.tsv"
    echo "=== stage $name took $((end - start)) s"
}

stage_collect() {
    "$PY" -m wp_training.data_cli collect-sim --task robosuite:Lift --episodes "$EPISODES" --out "$DEMOS" \
        --image-size "$IMAGE_SIZE" --seed 100000 --workers "$COLLECT_WORKERS" --overwrite \
        --post-success-steps "$POST_SUCCESS_STEPS"
}

stage_waypoints() {
    "$PY" -m wp_training.data_cli extract-waypoints --rlds "$RLDS" --robot libero --keys state --threshold 0.005 \
        --out "$WP" --plot 0 1
}

stage_stats() {
    "$PY" -m wp_training.data_cli stats --rlds "$RLDS" --robot libero --out "$STATS"
}

stage_tokenizer() {  # a small SentencePiece model trained on the demos' instructions (PaliGemma's ids 0..3)
    "$PY" - "$RLDS" "$TOKENIZER" <<'EOF'
import sys
from wp_training.rlds_io import RldsReader
from wp_training.text_tokenizer import train_sentencepiece
episodes = RldsReader(sys.argv[1]).episodes(observation_keys=[], step_keys=("language_instruction",))
texts = sorted({ep["language_instruction"] for _, ep in episodes})
print(f"instructions: {texts} -> {train_sentencepiece(sys.argv[2], texts)}")
EOF
}

DATA_OVERRIDES=(data.tokenizer_path="$TOKENIZER" data.stats_path="$STATS")

stage_ae() {
    rm -rf "$AE_RUN"
    # shellcheck disable=SC2086  # AE_ARGS is a list of key=value words
    "$PY" -m wp_training.train_cli --mode ae --config "$AE_CONFIG" run_dir="$AE_RUN" "${DATA_OVERRIDES[@]}" \
        data.rlds_dir="$RLDS" data.waypoint_indices="$WP/waypoint_indices.json" $AE_ARGS
}

stage_vlm() {
    rm -rf "$VLM_RUN"
    # shellcheck disable=SC2086
    "$PY" -m wp_training.train_cli --mode vlm --config "$VLM_CONFIG" run_dir="$VLM_RUN" "${DATA_OVERRIDES[@]}" \
        data.rlds_dir="$WP_RLDS" $VLM_ARGS
}

stage_vlm_refine() {  # a second cosine cycle (lower peak, other data order) from the first cycle's weights
    rm -rf "$VLM_REFINE_RUN"
    [[ "$REFINE_STEPS" -gt 0 ]] || return 0
    # shellcheck disable=SC2086
    "$PY" -m wp_training.train_cli --mode vlm --config "$VLM_CONFIG" run_dir="$VLM_REFINE_RUN" "${DATA_OVERRIDES[@]}" \
        data.rlds_dir="$WP_RLDS" num_steps="$REFINE_STEPS" pretrained_path="$VLM_RUN/final_model" \
        optim.peak_lr=5.0e-4 seed=1 $VLM_ARGS
}

stage_train() {  # one model at a time with every core, each logged to $WORK/train_<name>.log
    local name
    for name in ae vlm vlm_refine; do
        echo "training $name (log $WORK/train_$name.log)"
        "stage_$name" > "$WORK/train_$name.log" 2>&1 || { echo "$name training failed, see $WORK/train_$name.log" >&2; return 1; }
        tail -n 1 "$WORK/train_$name.log"
    done
}

final_vlm() {  # the VLM that is exported: the refined one when REFINE_STEPS > 0
    if [[ "$REFINE_STEPS" -gt 0 ]]; then echo "$VLM_REFINE_RUN/final_model"; else echo "$VLM_RUN/final_model"; fi
}

stage_export() {  # the trainers' final inference exports + stats + tokenizer + a PolicyConfig with relative paths
    rm -rf "$OUT/ae" "$OUT/vlm"
    mkdir -p "$OUT"
    cp -r "$AE_RUN/final_model" "$OUT/ae"
    cp -r "$(final_vlm)" "$OUT/vlm"
    cp "$STATS" "$OUT/stats.json"
    cp "$TOKENIZER" "$OUT/tokenizer.model"
    cat > "$OUT/policy.yaml" <<'EOF'
# The shipped default policy (robosuite Lift stand-in, LIBERO robot config). Paths are relative to this file.
# Rebuilt by scripts/train_demo_policy.sh; see README.md here for the commands, data and measured success rate.
robot: libero
vlm_checkpoint: vlm
ae_checkpoint: ae
stats_path: stats.json
tokenizer_path: tokenizer.model
device: cpu
num_waypoints: 7
num_flow_steps: 10
seed: 0
max_token_len: 256
EOF
    "$PY" -c "from wp_policy.runtime.policy import WaypointPolicy, load_policy_config as l; \
WaypointPolicy.from_config(l('$OUT/policy.yaml')); print('loaded $OUT/policy.yaml')"
    du -sh "$OUT"
}

stage_eval() {
    "$PY" -m wp_policy.sim.eval_cli --config "$EVAL_CONFIG" --set policy_config="$OUT/policy.yaml" \
        --set trials_per_task="$EVAL_EPISODES" --set env.image_size="$IMAGE_SIZE" --set record_video=false \
        --output-dir "$WORK/eval" --overwrite
}

for stage in "${STAGES[@]}"; do
    if ! declare -F "stage_$stage" > /dev/null; then
        echo "unknown stage '$stage'; stages: collect waypoints stats tokenizer train ae vlm vlm_refine export eval" >&2
        exit 2
    fi
    run_stage "$stage"
done
