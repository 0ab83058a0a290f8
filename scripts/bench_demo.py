"""Benchmark the demo against its bars: wall time, test accuracy, and the URL agreeing with evaluation.json.

    .venv/bin/python scripts/bench_demo.py [--dataset data/digits.zip] [--images data/digits/test]

Bars (issue: local cloud): at most 600 s on two cores, test accuracy at least 0.95, and the inference URL's
top-1 right on held-out test images at the same rate as evaluation.json. Prints the numbers, the time spent
per state, and exits non-zero when a bar is missed.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import urllib.request
from pathlib import Path

from stepsage.local.cli import dataset_name, summarize, upload_dataset, wait_for_execution
from stepsage.local.cloud import CloudSettings, LocalCloud
from stepsage.local.progress import ProgressPrinter

WALL_BAR_S = 600.0
ACCURACY_BAR = 0.95
# The URL and evaluation.json score the same images with the same weights; allow bf16-vs-fp32 flips only.
AGREEMENT_TOLERANCE = 0.01


def url_accuracy(url: str, test_dir: Path) -> tuple[float, int]:
    right = total = 0
    for class_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        for image in sorted(class_dir.glob("*.jpg")):
            request = urllib.request.Request(
                url, data=image.read_bytes(), method="POST", headers={"Content-Type": "image/jpeg"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                top1 = json.loads(response.read())["predictions"][0]["label"]
            right += top1 == class_dir.name
            total += 1
    return right / max(1, total), total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", type=Path, default=Path("data/digits.zip"))
    parser.add_argument("--images", type=Path, default=Path("data/digits/test"))
    parser.add_argument("--parameter", action="append", default=["ExtraHyperParameters=hflip=off"])
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.parameter)

    cloud = LocalCloud(CloudSettings(port=0, parameters=overrides, time_scale=0.1))
    printer = ProgressPrinter(stream=sys.stderr, show_epochs=False)
    started = time.monotonic()
    cloud.build()
    cloud.start()
    try:
        cloud.add_listener(printer)
        upload_started = time.time()
        name = dataset_name(args.dataset)
        key = upload_dataset(cloud, args.dataset, name)
        arn = wait_for_execution(cloud, key, upload_started)
        cloud.stepfunctions.wait(arn, timeout=1800)
        wall = time.monotonic() - started
        summary = summarize(functools.cache(cloud.client), arn, name, cloud.function_url)
        accuracy = summary.get("test_accuracy") or 0.0
        agreement, images = url_accuracy(f"{cloud.function_url}{name}", args.images)
    finally:
        cloud.stop()

    print(f"status               {summary['status']}")
    print(f"wall time            {wall:7.1f} s   (bar {WALL_BAR_S:.0f} s, ratio {wall / WALL_BAR_S:.2f})")
    print(f"test accuracy        {accuracy:7.4f}     (bar {ACCURACY_BAR})")
    print(f"URL top-1 accuracy   {agreement:7.4f}     on {images} test images")
    print("time per state")
    for state, seconds in printer.state_times().items():
        print(f"  {state:<20}{seconds:7.1f} s")
    missed = [
        label
        for label, ok in (
            ("status", summary["status"] == "SUCCEEDED"),
            ("wall time", wall <= WALL_BAR_S),
            ("accuracy", accuracy >= ACCURACY_BAR),
            ("URL agreement", abs(agreement - accuracy) <= AGREEMENT_TOLERANCE),
        )
        if not ok
    ]
    print("bars missed: " + (", ".join(missed) if missed else "none"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
