#!/usr/bin/env bash
# Rebuild the shipped default policy wp_policy/wp_policy/assets/policies/lift_demo/ from scratch with this
# project's own commands: scripted Lift demos -> waypoints -> stats -> tokenizer -> AE + VLM training ->
# checkpoint selection in simulation -> export. Work data goes to $WORK (default /tmp/wp_demo), never into the
# repo; only the exported files are committed. TASK=libero:<suite> trains the same recipe on scripted demos of a
# real LIBERO suite instead (multi-task, one instruction per task), e.g.
#   TASK=libero:libero_object WORK=/tmp/wp_libero_object scripts/train_demo_policy.sh
#
# Usage: scripts/train_demo_policy.sh [--help] [STAGE ...]
#   stages (default: all, in this order): collect waypoints stats tokenizer train select export eval
#   (train = ae, vlm, then vlm_refine, one after the other with every core: on 2 cores the VLM steps 1.5x
#    faster alone on 2 threads than on 1 thread beside the AE; each of ae / vlm / vlm_refine also runs alone;
#    select = `wp-train select`: every SELECT_EVERY-th VLM checkpoint of both cycles on SELECT_EPISODES held-out
#    Lift seeds from SELECT_SEED; export ships the one with the most successes, or the last VLM without select)
# Resuming: a finished stage leaves $WORK/.done/<stage> (holding its settings) and is skipped when run again; a
#   stage that runs invalidates the markers of the stages after it. An interrupted training stage continues from
#   its run's last checkpoint (wp-train --resume); an interrupted select keeps its finished exports and episodes.
#   A marker whose settings differ from the current ones stops the script (delete it, or FORCE=1 to redo the
#   named stages from scratch).
# Environment:
#   WORK=/tmp/wp_demo       work directory (datasets, runs, logs, stage markers and timings)
#   TASK=robosuite:Lift     collect-sim env: a stand-in (robosuite:Lift, robosuite:Stack) or libero:<suite>
#   EPISODES=500            successful scripted demonstrations to collect per task (LIBERO: 25, at most 50 - FIRST;
#                           one attempt per init state, so a task the expert fails on some states keeps fewer)
#   FIRST_INIT_STATE=25     LIBERO: demos start from init states FIRST.. (evaluation uses 0..EVAL_EPISODES-1)
#   POST_SUCCESS_STEPS=12   expert steps recorded past success (so the planner's stop lands above the success line)
#   MISSED_GRASP_FRACTION=0 share of demos recorded from a missed grasp (recovery demos: open, approach again, grasp)
#   PUSH_RATE=0             collect-sim --push-rate: chance per step that the expert's arm is pushed aside for a few
#                           steps (DART-style; the AE then has to follow its end waypoint, not the pose)
#   WAYPOINT_THRESHOLD=0.005  extract-waypoints --threshold: largest distance (8-D state) of a demo step from its
#                           waypoint segment; larger = sparser waypoints, so one plan reaches further
#   IMAGE_SIZE=128          camera render size of the demos and of the eval (models resize to 96 px VLM, 64 px AE)
#   COLLECT_WORKERS=2       rendering processes for collect-sim
#   EVAL_EPISODES=50        eval stage: seeded Lift episodes (test seeds 7..56); LIBERO: 5 trials per task
#                           (init states 0..4)
#   EVAL_VIDEO=false        true: the eval stage writes one MP4 per episode (two views, plan overlay)
#   OUT=wp_policy/wp_policy/assets/policies/lift_demo       export directory (LIBERO: $WORK/policy)
#   REFINE_STEPS=0          VLM steps of a second cosine cycle warm-started from the first VLM run (0: none)
#   AE_ARGS= VLM_ARGS=      extra wp-train overrides, e.g. AE_ARGS="num_steps=10" (smoke runs; VLM_ARGS apply
#                           to both VLM cycles)
#   PROPRIO_TOKENS=uncoupled  planner waypoint layout: uncoupled = one token per gripper (the right finger
#                           mirrors the left), all = one token per finger (the layout of earlier builds)
#   AUGMENT=true            training image augmentation of both models (data.augment.enabled; the configs say
#                           which kinds: the AE's all of openpi's, the VLM's colour jitter only)
#   NOISE_SCALE=0.5         the exported policy's AE sampling temperature (noise_scale: std of the flow's starting
#                           noise; 1 = the training distribution, lower places the arm more precisely)
#   SELECT_EPISODES=0       held-out episodes per candidate checkpoint (0: no selection, ship the last VLM;
#                           LIBERO: keep 0, its init states are split between demos and evaluation)
#   SELECT_SEED=1000        first held-out reset seed (disjoint from the test seeds 7..56 and the demos' 100000..)
#   SELECT_EVERY=1000       candidates: checkpoints at multiples of this step, plus each VLM cycle's last
#   FORCE=                  1: redo the named stages from scratch even when their markers say done
#   PY=.venv/bin/python
# Timings of every stage are appended to $WORK/timings.tsv (stage, seconds, date).
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,53p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PY:-$ROOT/.venv/bin/python}"
WORK="${WORK:-/tmp/wp_demo}"
TASK="${TASK:-robosuite:Lift}"
case "$TASK" in
    robosuite:*) LIBERO= ;;
    libero:*) LIBERO=1 ;;
    *) echo "TASK must be robosuite:<stand-in> or libero:<suite>, got '$TASK'" >&2; exit 2 ;;
esac
EPISODES="${EPISODES:-${LIBERO:+25}}"
EPISODES="${EPISODES:-500}"
FIRST_INIT_STATE="${FIRST_INIT_STATE:-25}"
POST_SUCCESS_STEPS="${POST_SUCCESS_STEPS:-12}"
MISSED_GRASP_FRACTION="${MISSED_GRASP_FRACTION:-0}"
PUSH_RATE="${PUSH_RATE:-0}"
DEFAULT_WAYPOINT_THRESHOLD=0.005  # a marker of a default run reads "-", as before the variable existed
WAYPOINT_THRESHOLD="${WAYPOINT_THRESHOLD:-$DEFAULT_WAYPOINT_THRESHOLD}"
IMAGE_SIZE="${IMAGE_SIZE:-128}"
COLLECT_WORKERS="${COLLECT_WORKERS:-2}"
EVAL_EPISODES="${EVAL_EPISODES:-${LIBERO:+5}}"
EVAL_EPISODES="${EVAL_EPISODES:-50}"
EVAL_VIDEO="${EVAL_VIDEO:-false}"
REFINE_STEPS="${REFINE_STEPS:-0}"
PROPRIO_TOKENS="${PROPRIO_TOKENS:-uncoupled}"
AUGMENT="${AUGMENT:-true}"
NOISE_SCALE="${NOISE_SCALE:-0.5}"
SELECT_EPISODES="${SELECT_EPISODES:-0}"
SELECT_SEED="${SELECT_SEED:-1000}"
SELECT_EVERY="${SELECT_EVERY:-1000}"
FORCE="${FORCE:-}"
if [[ -n "$LIBERO" ]]; then OUT="${OUT:-$WORK/policy}"; else OUT="${OUT:-$ROOT/wp_policy/wp_policy/assets/policies/lift_demo}"; fi
export MUJOCO_GL="${MUJOCO_GL:-egl}"

DEMOS="$WORK/demos"                      # collect-sim output
DATASET="sim_$(echo "${TASK#*:}" | tr 'A-Z,' 'a-z_')"  # collect-sim's dataset name: sim_lift, sim_libero_object ..
RLDS="$DEMOS/$DATASET/1.0.0"             # LIBERO-layout RLDS of the demos
WP="$WORK/waypoints"                     # waypoint_indices.json + waypoint-filtered RLDS + plots
WP_RLDS="$WP/waypoint_filtered_rlds__libero/1.0.0"
STATS="$WORK/dataset_statistics.json"
TOKENIZER="$WORK/tokenizer.model"
AE_RUN="$WORK/runs/ae"
VLM_RUN="$WORK/runs/vlm"
VLM_REFINE_RUN="$WORK/runs/vlm_refine"
SELECT_DIR="$WORK/select"
DONE="$WORK/.done"                       # stage markers
AE_CONFIG="configs/train/demo_ae_lift.yaml"
VLM_CONFIG="configs/train/demo_vlm_lift.yaml"
EVAL_CONFIG="configs/eval/eval_lift.yaml"
EVAL_ENV=(--set env.image_size="$IMAGE_SIZE")
COLLECT_ENV=()
VLM_TASK_ARGS=()
if [[ -n "$LIBERO" ]]; then
    EVAL_CONFIG="configs/eval/eval_libero.yaml"
    EVAL_ENV+=(--set env.env="$TASK" --set workers="$COLLECT_WORKERS" --set torch_threads=0)
    COLLECT_ENV=(--first-init-state "$FIRST_INIT_STATE" --allow-fewer)  # a task keeps what its init states gave
    VLM_TASK_ARGS=(data.max_token_len=192)  # LIBERO's instructions are long: up to about 55 text tokens + 7 waypoints
elif [[ "$TASK" != robosuite:Lift ]]; then
    EVAL_ENV+=(--set env.env="$TASK")
fi
ORDER=(collect waypoints stats tokenizer ae vlm vlm_refine select export eval)

AE_ARGS="${AE_ARGS:-}"
VLM_ARGS="${VLM_ARGS:-}"

STAGES=("$@")
[[ ${#STAGES[@]} -eq 0 ]] && STAGES=(collect waypoints stats tokenizer train select export eval)
mkdir -p "$WORK" "$DONE"

settings() {  # settings NAME: what a stage's outputs depend on, recorded in its marker
    case "$1" in
        collect) echo "episodes=$EPISODES image_size=$IMAGE_SIZE post_success_steps=$POST_SUCCESS_STEPS$(
            [[ "$MISSED_GRASP_FRACTION" == 0 ]] || echo " missed_grasp_fraction=$MISSED_GRASP_FRACTION")$(
            [[ "$PUSH_RATE" == 0 ]] || echo " push_rate=$PUSH_RATE")$(
            [[ "$TASK" == robosuite:Lift ]] || echo " task=$TASK")${LIBERO:+ first_init_state=$FIRST_INIT_STATE}" ;;
        waypoints) [[ "$WAYPOINT_THRESHOLD" == "$DEFAULT_WAYPOINT_THRESHOLD" ]] && echo "-" || echo "threshold=$WAYPOINT_THRESHOLD" ;;
        ae) echo "augment=$AUGMENT args=$AE_ARGS" ;;
        vlm) echo "augment=$AUGMENT proprio_tokens=$PROPRIO_TOKENS args=$VLM_ARGS" ;;
        vlm_refine) echo "steps=$REFINE_STEPS augment=$AUGMENT proprio_tokens=$PROPRIO_TOKENS args=$VLM_ARGS" ;;
        select) echo "episodes=$SELECT_EPISODES seed=$SELECT_SEED every=$SELECT_EVERY image_size=$IMAGE_SIZE" ;;
        export) echo "out=$OUT select_episodes=$SELECT_EPISODES noise_scale=$NOISE_SCALE" ;;
        eval) echo "out=$OUT episodes=$EVAL_EPISODES image_size=$IMAGE_SIZE$([[ "$EVAL_VIDEO" == false ]] || echo " video=$EVAL_VIDEO")" ;;
        *) echo "-" ;;
    esac
}

run_stage() {  # run_stage NAME: skip it when its marker says done; else time, log and mark it
    local name="$1" marker="$DONE/$1" start end other later=0
    if [[ -f "$marker" && -z "$FORCE" ]]; then
        if [[ "$(cat "$marker")" != "$(settings "$name")" ]]; then
            echo "stage $name was done with other settings ($(cat "$marker")); now: $(settings "$name")." >&2
            echo "Delete $marker (the stages after it rerun too) or set FORCE=1 to redo it." >&2
            exit 2
        fi
        echo "=== stage $name already done ($marker); skipped"
        return 0
    fi
    echo "=== stage $name ($(date -u +%H:%M:%S) UTC)"
    start=$(date +%s)
    "stage_$name"
    end=$(date +%s)
    for other in "${ORDER[@]}"; do  # later stages were built from this stage's old outputs
        [[ $later -eq 1 ]] && rm -f "$DONE/$other"
        [[ "$other" == "$name" ]] && later=1
    done
    settings "$name" > "$marker"
    printf '%s\t%s\t%s\n' "$name" "$((end - start))" "$(date -u +%FT%TZ)" >> "$WORK/timings.tsv"
    echo "=== stage $name took $((end - start)) s"
}

stage_collect() {
    "$PY" -m wp_training.data_cli collect-sim --task "$TASK" --episodes "$EPISODES" --out "$DEMOS" \
        --image-size "$IMAGE_SIZE" --seed 100000 --workers "$COLLECT_WORKERS" --overwrite \
        --post-success-steps "$POST_SUCCESS_STEPS" --missed-grasp-fraction "$MISSED_GRASP_FRACTION" \
        --push-rate "$PUSH_RATE" "${COLLECT_ENV[@]}"
}

stage_waypoints() {
    "$PY" -m wp_training.data_cli extract-waypoints --rlds "$RLDS" --robot libero --keys state \
        --threshold "$WAYPOINT_THRESHOLD" --out "$WP" --plot 0 1
}

stage_stats() {
    "$PY" -m wp_training.data_cli stats --rlds "$RLDS" --robot libero --out "$STATS"
}

stage_tokenizer() {  # a small SentencePiece model trained on the demos' instructions (PaliGemma's ids 0..3)
    "$PY" -m wp_training.data_cli tokenizer --rlds "$RLDS" --out "$TOKENIZER"
}

DATA_OVERRIDES=(data.tokenizer_path="$TOKENIZER" data.stats_path="$STATS" data.augment.enabled="$AUGMENT")

latest_checkpoint() {  # latest_checkpoint RUN_DIR: its newest complete checkpoint (empty when none)
    find "$1/checkpoints" -mindepth 1 -maxdepth 1 -type d -name 'step_*' ! -name '*.tmp' 2>/dev/null | sort | tail -n 1
}

train_run() {  # train_run NAME MODE RUN_DIR CONFIG OVERRIDE...: train, or continue an interrupted run
    local name="$1" mode="$2" run="$3" config="$4" log="$WORK/train_$1.log" resume=()
    shift 4
    [[ -n "$FORCE" ]] && rm -rf "$run"
    if [[ -n "$(latest_checkpoint "$run")" ]]; then
        resume=(--resume)
        echo "resuming $name from $(latest_checkpoint "$run")"
    else
        rm -rf "$run"  # no complete checkpoint: nothing to continue from
    fi
    echo "training $name (log $log)"
    "$PY" -m wp_training.train_cli --mode "$mode" --config "$config" run_dir="$run" "$@" "${resume[@]}" \
        >> "$log" 2>&1 || { echo "$name training failed, see $log" >&2; return 1; }
    if [[ ! -f "$run/final_model/model_config.yaml" ]]; then  # stopped between its last checkpoint and the export
        "$PY" -m wp_training.train_cli export --config "$config" --checkpoint "$(latest_checkpoint "$run")" \
            --out "$run/final_model" run_dir="$run" "$@" >> "$log" 2>&1
    fi
    tail -n 1 "$log"
}

stage_ae() {
    # shellcheck disable=SC2086  # AE_ARGS is a list of key=value words
    train_run ae ae "$AE_RUN" "$AE_CONFIG" "${DATA_OVERRIDES[@]}" data.rlds_dir="$RLDS" \
        data.waypoint_indices="$WP/waypoint_indices.json" $AE_ARGS
}

stage_vlm() {
    # shellcheck disable=SC2086
    train_run vlm vlm "$VLM_RUN" "$VLM_CONFIG" "${DATA_OVERRIDES[@]}" data.rlds_dir="$WP_RLDS" \
        model.proprio_tokens="$PROPRIO_TOKENS" "${VLM_TASK_ARGS[@]}" $VLM_ARGS
}

stage_vlm_refine() {  # a second cosine cycle (lower peak, other data order) from the first cycle's weights
    [[ "$REFINE_STEPS" -gt 0 ]] || return 0
    # shellcheck disable=SC2086
    train_run vlm_refine vlm "$VLM_REFINE_RUN" "$VLM_CONFIG" "${DATA_OVERRIDES[@]}" data.rlds_dir="$WP_RLDS" \
        model.proprio_tokens="$PROPRIO_TOKENS" "${VLM_TASK_ARGS[@]}" num_steps="$REFINE_STEPS" \
        pretrained_path="$VLM_RUN/final_model" \
        optim.peak_lr=5.0e-4 seed=1 $VLM_ARGS
}

stage_train() {  # one model at a time with every core; each is a stage of its own (marker, resume)
    local name
    for name in ae vlm vlm_refine; do
        run_stage "$name"
    done
}

write_policy_yaml() {  # write_policy_yaml FILE VLM AE STATS TOKENIZER: a PolicyConfig naming these files
    cat > "$1" <<YAMLEOF
# A demo policy ($TASK, LIBERO robot config). Paths are relative to this file.
# Rebuilt by scripts/train_demo_policy.sh; see README.md here for the commands, data and measured success rate.
robot: libero
vlm_checkpoint: $2
ae_checkpoint: $3
stats_path: $4
tokenizer_path: $5
device: cpu
num_waypoints: 7
num_flow_steps: 10
seed: 0
noise_scale: $NOISE_SCALE
max_token_len: 256
YAMLEOF
}

last_vlm() {  # the last VLM trained: the refined one when REFINE_STEPS > 0
    if [[ "$REFINE_STEPS" -gt 0 ]]; then echo "$VLM_REFINE_RUN/final_model"; else echo "$VLM_RUN/final_model"; fi
}

stage_select() {  # the VLM checkpoint with the most successes on held-out seeds (wp-train select)
    [[ "$SELECT_EPISODES" -gt 0 ]] || { rm -rf "$SELECT_DIR"; return 0; }
    local runs=("$VLM_RUN")
    [[ "$REFINE_STEPS" -gt 0 ]] && runs+=("$VLM_REFINE_RUN")
    [[ -n "$FORCE" ]] && rm -rf "$SELECT_DIR"
    mkdir -p "$SELECT_DIR"
    write_policy_yaml "$SELECT_DIR/base_policy.yaml" "$(last_vlm)" "$AE_RUN/final_model" "$STATS" "$TOKENIZER"
    "$PY" -m wp_training.train_cli select --runs "${runs[@]}" --policy "$SELECT_DIR/base_policy.yaml" \
        --eval-config "$EVAL_CONFIG" --seed "$SELECT_SEED" --episodes "$SELECT_EPISODES" --every "$SELECT_EVERY" \
        --out "$SELECT_DIR" "${EVAL_ENV[@]}" --no-progress
}

final_vlm() {  # the VLM that is exported: the selected one after a select stage, else the last one trained
    if [[ "$SELECT_EPISODES" -gt 0 && -f "$DONE/select" ]]; then echo "$SELECT_DIR/best_vlm"; else last_vlm; fi
}

stage_export() {  # the chosen VLM + the AE's final export + stats + tokenizer + a PolicyConfig (relative paths)
    rm -rf "$OUT/ae" "$OUT/vlm"
    mkdir -p "$OUT"
    cp -r "$AE_RUN/final_model" "$OUT/ae"
    cp -r "$(final_vlm)" "$OUT/vlm"
    cp "$STATS" "$OUT/stats.json"
    cp "$TOKENIZER" "$OUT/tokenizer.model"
    write_policy_yaml "$OUT/policy.yaml" vlm ae stats.json tokenizer.model
    "$PY" -c "from wp_policy.runtime.policy import WaypointPolicy, load_policy_config as l; \
WaypointPolicy.from_config(l('$OUT/policy.yaml')); print('loaded $OUT/policy.yaml (VLM: $(final_vlm))')"
    du -sh "$OUT"
}

stage_eval() {
    "$PY" -m wp_policy.sim.eval_cli --config "$EVAL_CONFIG" --policy "$OUT/policy.yaml" "${EVAL_ENV[@]}" \
        --set trials_per_task="$EVAL_EPISODES" --set record_video="$EVAL_VIDEO" --output-dir "$WORK/eval" --overwrite
}

for stage in "${STAGES[@]}"; do
    if ! declare -F "stage_$stage" > /dev/null; then
        echo "unknown stage '$stage'; stages: collect waypoints stats tokenizer train ae vlm vlm_refine select export eval" >&2
        exit 2
    fi
    if [[ "$stage" == train ]]; then stage_train; else run_stage "$stage"; fi
done
