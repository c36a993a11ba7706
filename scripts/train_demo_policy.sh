#!/usr/bin/env bash
# Rebuild the shipped default policy wp_policy/wp_policy/assets/policies/lift_demo/ from scratch with this
# project's own commands: scripted Lift demos -> waypoints -> stats -> tokenizer -> AE + VLM training -> export.
# Work data goes to $WORK (default /tmp/wp_demo), never into the repo; only the exported files are committed.
#
# Usage: scripts/train_demo_policy.sh [--help] [STAGE ...]
#   stages (default: all, in this order): collect waypoints stats tokenizer train export eval
#   (train = ae and vlm in parallel, one thread each; ae / vlm run one alone)
# Environment:
#   WORK=/tmp/wp_demo       work directory (datasets, runs, logs, stage timings)
#   EPISODES=150            successful scripted Lift demonstrations to collect
#   POST_SUCCESS_STEPS=12   expert steps recorded past success (so the planner's stop lands above the success line)
#   IMAGE_SIZE=128          camera render size of the demos and of the eval (models resize to 96 px VLM, 64 px AE)
#   COLLECT_WORKERS=2       rendering processes for collect-sim
#   EVAL_EPISODES=50        seeded Lift episodes for the eval stage
#   OUT=wp_policy/wp_policy/assets/policies/lift_demo       export directory
#   AE_ARGS= VLM_ARGS=      extra wp-train overrides, e.g. AE_ARGS="num_steps=10" (smoke runs)
#   PY=.venv/bin/python
# Timings of every stage are appended to $WORK/timings.tsv (stage, seconds, date).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
WORK="${WORK:-/tmp/wp_demo}"
EPISODES="${EPISODES:-150}"
POST_SUCCESS_STEPS="${POST_SUCCESS_STEPS:-12}"
IMAGE_SIZE="${IMAGE_SIZE:-128}"
COLLECT_WORKERS="${COLLECT_WORKERS:-2}"
EVAL_EPISODES="${EVAL_EPISODES:-50}"
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

stage_train() {  # both models at once, one thread each: on 2 cores this beats two 2-thread runs in sequence
    local ae_pid vlm_pid status=0
    OMP_NUM_THREADS=1 stage_ae > "$WORK/train_ae.log" 2>&1 &
    ae_pid=$!
    OMP_NUM_THREADS=1 stage_vlm > "$WORK/train_vlm.log" 2>&1 &
    vlm_pid=$!
    echo "training AE (pid $ae_pid, log $WORK/train_ae.log) and VLM (pid $vlm_pid, log $WORK/train_vlm.log)"
    wait "$ae_pid" || { status=$?; echo "AE training failed, see $WORK/train_ae.log" >&2; }
    wait "$vlm_pid" || { status=$?; echo "VLM training failed, see $WORK/train_vlm.log" >&2; }
    tail -n 2 "$WORK/train_ae.log" "$WORK/train_vlm.log"
    return "$status"
}

stage_export() {  # the trainers' final inference exports + stats + tokenizer + a PolicyConfig with relative paths
    rm -rf "$OUT/ae" "$OUT/vlm"
    mkdir -p "$OUT"
    cp -r "$AE_RUN/final_model" "$OUT/ae"
    cp -r "$VLM_RUN/final_model" "$OUT/vlm"
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
        echo "unknown stage '$stage'; stages: collect waypoints stats tokenizer train ae vlm export eval" >&2
        exit 2
    fi
    run_stage "$stage"
done
