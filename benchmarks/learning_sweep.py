"""Several `benchmarks/learning.py` runs at once on one machine, one process each, then one archive.

A GPU holds many copies of the small model, and each run is bound by its own Python and kernel
launches, so variants of the settings train side by side in one call. Every variant is a name and
its `--set` overrides (and optionally `preset=<name>`), separated by commas:

    python benchmarks/learning_sweep.py --out $OUT --deadline-s 420 --max-steps 40 \\
        base "lr6e-4:learning_rate=6e-4" "learnable:preset=4x4-512"

Each variant writes into `<out>/<name>/` (see learning.py); `<out>/sweep.md` compares them, and
`--archive` packs every folder into one `sweep.tar.gz` (the device tool returns few files).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`name:key=value,key=value` -> (name, learning.py arguments)."""
    name, _, settings = text.partition(":")
    arguments = []
    for pair in filter(None, (part.strip() for part in settings.split(","))):
        key, _, value = pair.partition("=")
        arguments += ["--preset", value] if key == "preset" else ["--set", pair]
    return name, arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline-s", type=float, required=True, help="training time of each variant")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--gguf", help="passed to learning.py")
    parser.add_argument("--model-dir", default="outputs/smollm2-135m-instruct")
    parser.add_argument("--archive", action="store_true", help="pack the variants into sweep.tar.gz")
    parser.add_argument("variants", nargs="+", help="name:key=value,... (preset=<name> picks a game)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [
        "--max-steps",
        str(args.max_steps),
        "--deadline-s",
        str(args.deadline_s),
        "--model-dir",
        args.model_dir,
    ]
    if args.gguf:
        common += ["--gguf", args.gguf]
    # Convert once, before the variants start, so that they do not race to write the same folder.
    subprocess.run(
        [sys.executable, str(HERE / "learning.py"), "--convert-only", *common, "--out", str(out)], check=True
    )
    started = time.monotonic()
    processes = {}
    for text in args.variants:
        name, arguments = parse_variant(text)
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        log = (folder / "log.txt").open("w")
        command = [sys.executable, str(HERE / "learning.py"), "--out", str(folder), *common, *arguments]
        processes[name] = (
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ),
            log,
        )
    lines = [
        "| variant | settings | steps | s/step | function_works first -> last | total reward first -> last |"
    ]
    lines.append("|---|---|---|---|---|---|")
    for text in args.variants:
        name, arguments = parse_variant(text)
        process, log = processes[name]
        status = process.wait()
        log.close()
        summary_path = out / name / "learning.json"
        if status or not summary_path.is_file():
            lines.append(f"| {name} | {' '.join(arguments)} | failed ({status}) | | | |")
            continue
        summary = json.loads(summary_path.read_text())
        works = summary["learning"].get("rewards/function_works/mean", {})
        total = summary["learning"].get("reward", {})
        lines.append(
            f"| {name} | {' '.join(arguments)} | {summary['steps']} | {summary['seconds']['median_step']} | "
            f"{works.get('first')} -> {works.get('last')} | {total.get('first')} -> {total.get('last')} |"
        )
    lines.append(f"\nwall time {time.monotonic() - started:.0f} s")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    for text in args.variants:
        name, _ = parse_variant(text)
        print(
            f"\n## {name}\n" + (out / name / "report.md").read_text()
            if (out / name / "report.md").is_file()
            else ""
        )
    if args.archive:
        with tarfile.open(out / "sweep.tar.gz", "w:gz") as archive:
            for text in args.variants:
                name, _ = parse_variant(text)
                archive.add(
                    out / name,
                    arcname=name,
                    filter=lambda info: None if info.name.endswith("/run") or "/run/" in info.name else info,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
