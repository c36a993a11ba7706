"""``wp-data``: dataset preparation commands (waypoint extraction, normalisation statistics, sim demos).

Examples::

    # LIBERO: waypoints on the 8-D state, forced at gripper changes; also writes the waypoint-filtered RLDS
    wp-data extract-waypoints --rlds data/libero_object_no_noops/libero_object_no_noops/1.0.0 --robot libero \\
        --keys state --threshold 0.005 --out data/libero_object_wp --plot 0 1

    # R1 Lite, as in the original recipe: both arms' joint positions, threshold 0.001 rad
    wp-data extract-waypoints --rlds data/r1lite/1.0.0 --robot r1lite \\
        --keys joint_position_arm_left joint_position_arm_right --threshold 0.001 --out data/r1lite_wp

    # the stats file shared by the AE and the VLM
    wp-data stats --rlds data/libero_object_no_noops/libero_object_no_noops/1.0.0 --robot libero \\
        --out data/libero_object_wp/norm_stats/dataset_statistics.json

    # frozen-vision feature cache for a training config (then train with model.vision_cache=<dir>, freeze: [vision])
    wp-data cache-features --config configs/train/waypoint_ae_libero.yaml --out data/libero_object_wp/vision_ae \\
        --device cuda freeze=[vision]

    # scripted-expert demonstrations on the robosuite stand-ins or real LIBERO (wp_training.sim_demos.collect_sim)
    wp-data collect-sim --task robosuite:Lift --episodes 50 --out data/sim_lift --workers 2
    wp-data collect-sim --task libero:libero_object --task-ids 0,3 --episodes 20 --out data/sim_libero_object

    # recorded bags (teleoperation on the robot) -> RLDS in the robot config's layout (wp_training.data.bag_convert)
    wp-data from-bags recordings/*.mcap --robot r1lite --out data/r1lite_teleop --episode-topic /teleop/recording

    # a LeRobot data set folder (v2.1 or v3.0) -> RLDS, its features mapped by a small YAML
    # (wp_training.data.lerobot_convert)
    wp-data from-lerobot data/lerobot/aloha_cube --map configs/lerobot/aloha_to_r1lite.yaml --robot r1lite \\
        --out data/aloha_rlds

    # a small SentencePiece model on the datasets' instructions (tiny models, tests, demo policies)
    wp-data tokenizer --rlds data/sim_lift/sim_lift/1.0.0 --out data/sim_lift/tokenizer.model
"""

from __future__ import annotations

import argparse
import sys

from wp_policy.cli_help import HelpFormatter
from wp_policy.config_io import ConfigError, parse_overrides
from wp_policy.normalize import StatsError
from wp_policy.robot_config import load_robot_config
from wp_training.data import bag_convert, lerobot_convert
from wp_training.data.extract import ExtractConfig, run_extraction
from wp_training.data.rlds_layout import RldsError
from wp_training.data.stats import run_stats
from wp_training.sim_demos import collect_sim


def _max_segment(text: str) -> int | None:
    return None if text.lower() in ("none", "null", "0") else int(text)


def _examples(command: str) -> str:
    """The module docstring's examples of one subcommand, so each subcommand's --help shows its own."""
    blocks = __doc__.split("Examples::")[1].strip("\n").split("\n\n")
    return "examples:\n" + "\n\n".join(b for b in blocks if f"wp-data {command} " in b)


def _module_command(sub, name: str, module, summary: str, description: str, epilog: str) -> None:
    """A subcommand whose options and run function live in ``module`` (``add_arguments``, ``run``)."""
    parser = sub.add_parser(name, help=summary, description=description.replace("``", ""), epilog=epilog,
                            formatter_class=HelpFormatter)
    module.add_arguments(parser)
    parser.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wp-data", description=__doc__.split("\n")[0].replace("``", ""),
                                     epilog=__doc__.split("Examples::")[1],
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("extract-waypoints", help="select waypoints, write waypoint_indices.json + filtered RLDS",
                        description="Select the waypoints of every episode (the fewest frames such that linear "
                                    "interpolation between them\nstays within --threshold of every frame), write "
                                    "waypoint_indices.json, the waypoint-filtered RLDS\nthe training reads, and "
                                    "optional plots.", epilog=_examples("extract-waypoints"),
                        formatter_class=HelpFormatter)
    ex.add_argument("--rlds", required=True, help="RLDS directory holding dataset_info.json")
    ex.add_argument("--robot", default="libero", help="robot config name (libero, r1lite) or YAML path")
    ex.add_argument("--out", required=True, help="output directory")
    ex.add_argument("--split", default="train", help="split to read")
    ex.add_argument("--keys", nargs="+", default=(), help="observation vectors to measure (default: robot state_keys)")
    ex.add_argument("--dims", nargs="+", type=int, default=(), help="positions in the concatenated keys (default all)")
    ex.add_argument("--threshold", type=float, default=0.005, help="max distance of a frame from its segment")
    ex.add_argument("--method", choices=("dp", "greedy", "awe_dp"), default="dp",
                    help="dp: exact minimum; greedy: faster; awe_dp: AWE's own dp_waypoint_selection (its pos_only "
                         "sets with --no-gripper-changes --max-segment none)")
    ex.add_argument("--max-segment", type=_max_segment, default=32, help="longest pair in steps; 'none' = no limit")
    ex.add_argument("--no-gripper-changes", action="store_true", help="do not force waypoints at gripper changes")
    ex.add_argument("--gripper-level", type=float, default=0.5, help="open/closed split in model space [0, 1]")
    ex.add_argument("--workers", type=int, default=2, help="selection processes (0/1: none)")
    ex.add_argument("--no-filtered", action="store_true", help="skip writing the waypoint-filtered RLDS")
    ex.add_argument("--filtered-name", default="", help="dataset name of the filtered RLDS")
    ex.add_argument("--plot", nargs="*", type=int, default=(), metavar="EPISODE", help="write PNG plots of episodes")
    ex.set_defaults(func=_extract)

    st = sub.add_parser("stats", help="q01/q99/mean/std/min/max + counts of model-space actions and proprio",
                        description="Normalisation statistics of model-space actions and proprio (the file both "
                                    "models are trained\nand deployed with).", epilog=_examples("stats"),
                        formatter_class=HelpFormatter)
    st.add_argument("--rlds", required=True, help="RLDS directory holding dataset_info.json")
    st.add_argument("--robot", default="libero", help="robot config name (libero, r1lite) or YAML path")
    st.add_argument("--out", required=True, help="output JSON path")
    st.add_argument("--split", default="train", help="split to read")
    st.set_defaults(func=_stats)

    cf = sub.add_parser("cache-features", help="run the frozen vision tower once; store features for training",
                        description="Precompute the SigLIP features of every frame a training config's dataset can "
                                    "sample (see wp_training.engine.feature_cache). Train with "
                                    "model.vision_cache=<out> and the vision group frozen; the cache is tied to the "
                                    "vision weights it was made with (seed / pretrained_path / precision of the "
                                    "config).",
                        epilog=_examples("cache-features"), formatter_class=HelpFormatter)
    cf.add_argument("--config", required=True, help="the training YAML (configs/train/*.yaml) the cache is for")
    cf.add_argument("--out", required=True, help="output directory (index.json + safetensors shards)")
    cf.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    cf.add_argument("--batch-size", type=int, default=32, help="frames per vision-tower call")
    cf.add_argument("--rows-per-shard", type=int, default=4096, help="frames per safetensors shard")
    cf.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    cf.add_argument("overrides", nargs="*", metavar="key=value", help="training config overrides (dotted keys)")
    cf.set_defaults(func=_cache_features)

    _module_command(sub, "collect-sim", collect_sim,
                    "scripted-expert demos (stand-ins, real LIBERO) -> LIBERO-layout RLDS",
                    description=collect_sim.__doc__.split("\n")[0], epilog=collect_sim.__doc__.split("Examples::")[1])
    for name, module, summary in (
        ("from-bags", bag_convert, "recorded ROS 2 bags -> RLDS in the robot config's layout"),
        ("from-lerobot", lerobot_convert, "a LeRobot data set folder (v2.1, v3.0) -> RLDS in the robot's layout"),
    ):
        before, example = module.__doc__.split("Example::")
        _module_command(sub, name, module, summary, description=before, epilog="Example:" + example)

    tk = sub.add_parser("tokenizer", help="train a small SentencePiece model on datasets' instructions",
                        description="Train a small BPE SentencePiece model on the distinct instructions of one or "
                                    "more RLDS datasets\nplus a built-in corpus of prompt text "
                                    "(wp_training.data.text_tokenizer), for tiny models, tests and demo\npolicies. Ids "
                                    "follow PaliGemma's (pad 0, eos 1, bos 2, unk 3); production uses PaliGemma's "
                                    "own\ntokenizer.model.",
                        epilog="Example:\n  wp-data tokenizer --rlds data/sim_lift/sim_lift/1.0.0 "
                               "--out data/sim_lift/tokenizer.model",
                        formatter_class=HelpFormatter)
    tk.add_argument("--rlds", nargs="+", required=True, help="RLDS directories holding dataset_info.json")
    tk.add_argument("--out", required=True, help="output .model path")
    tk.add_argument("--vocab-size", type=int, default=400, help="target vocabulary size")
    tk.add_argument("--split", default="train", help="split to read")
    tk.set_defaults(func=_tokenizer)
    return parser


def _extract(args) -> int:
    cfg = ExtractConfig(
        source_dir=args.rlds, out_dir=args.out, robot=args.robot, split=args.split, keys=tuple(args.keys),
        dims=tuple(args.dims), threshold=args.threshold, method=args.method, max_segment=args.max_segment,
        gripper_changes=not args.no_gripper_changes, gripper_level=args.gripper_level, workers=args.workers,
        filtered=not args.no_filtered, filtered_name=args.filtered_name, plot_episodes=tuple(args.plot),
    )
    result = run_extraction(cfg)
    s = result.summary
    print(f"{s['num_episodes']} episodes, {s['num_steps']} steps -> {s['num_waypoints']} waypoints "
          f"({100 * s['retention']:.1f}%), {s['pairs_within_32']}/{s['num_pairs']} pairs within 32 steps")
    print(f"wrote {result.index_path}")
    if result.filtered_dir is not None:
        print(f"wrote {result.filtered_dir}")
    for p in result.plots:
        print(f"wrote {p}")
    return 0


def _stats(args) -> int:
    path, stats = run_stats(args.rlds, load_robot_config(args.robot), args.out, args.split)
    print(f"{stats.num_trajectories} episodes, {stats.num_transitions} steps -> {path}")
    return 0


def _cache_features(args) -> int:
    from wp_training.engine.feature_cache import read_index, write_cache
    from wp_training.engine.train_config import load_train_config

    if args.batch_size < 1 or args.rows_per_shard < 1:
        raise ValueError(f"--batch-size ({args.batch_size}) and --rows-per-shard ({args.rows_per_shard}) must be >= 1")
    cfg = load_train_config(args.config, parse_overrides(args.overrides))
    path = write_cache(cfg, args.out, batch_size=args.batch_size, rows_per_shard=args.rows_per_shard,
                       device=args.device, overwrite=args.overwrite)
    index = read_index(path.parent)
    print(f"{index['num_rows']} frames, features {index['feature_shape']} {index['dtype']} in "
          f"{len(index['shards'])} shard(s); vision hash {index['vision_hash'][:12]}")
    print(f"wrote {path.parent}  (train with model.vision_cache={path.parent} and freeze: [vision])")
    return 0


def _tokenizer(args) -> int:
    from wp_training.data.rlds_reader import RldsReader
    from wp_training.data.text_tokenizer import train_sentencepiece

    if args.vocab_size < 16:
        raise ValueError(f"--vocab-size must be >= 16, got {args.vocab_size}")
    texts = sorted({ep["language_instruction"] for rlds in args.rlds for _, ep in RldsReader(rlds, args.split)
                    .episodes(observation_keys=[], step_keys=("language_instruction",))})
    path = train_sentencepiece(args.out, texts, args.vocab_size)
    print(f"{len(texts)} distinct instruction(s) from {len(args.rlds)} dataset(s): {texts[:5]}"
          f"{' ...' if len(texts) > 5 else ''}")
    print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (RldsError, StatsError, ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as exc:
        print(f"wp-data {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
