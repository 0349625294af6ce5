"""Dataset scan throughput: cold (no metadata cache) and warm, against decoding every image.

    .venv/bin/python bench/scan.py [--count 10000] [--dir FOLDER] [--keep]

Makes COUNT small images of mixed sizes and formats (png, jpeg, webp; every 7th EXIF-rotated)
with a .txt caption each, then times what `fluxtui validate` does (config load, rules, scan)
with and without the scan cache, and Pillow decoding every image (`Image.open(p).load()`).
"Cold" means no scan cache; the files themselves are in the OS page cache either way.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

FORMATS = (("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP"))
SIZES = ((128, 128), (256, 192), (192, 320), (384, 384), (512, 384), (320, 512), (640, 448), (768, 512))


def _make(args: tuple[str, int]) -> None:
    from PIL import Image, ImageDraw

    folder, i = args
    w, h = SIZES[(i * 7) % len(SIZES)]
    ext, fmt = FORMATS[i % len(FORMATS)]
    im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    draw = ImageDraw.Draw(im)
    c = (i * 37 % 255, i * 91 % 255, i * 53 % 255)
    draw.ellipse((w // 5, h // 5, w * 4 // 5, h * 4 // 5), fill=c)
    draw.text((8, 8), f"image {i}", fill=(255, 255, 255))
    kw = {}
    if i % 7 == 0:
        exif = Image.Exif()
        exif[0x0112] = 6
        kw["exif"] = exif
    if fmt == "JPEG":
        kw["quality"] = 90
    sub = Path(folder) / f"part{i // 1000:02d}"
    im.save(sub / f"img_{i:05d}.{ext}", fmt, **kw)
    (sub / f"img_{i:05d}.txt").write_text(f"a gradient with a circle, image {i}\n")


def make_images(folder: Path, count: int) -> None:
    for part in range((count + 999) // 1000):
        (folder / f"part{part:02d}").mkdir(parents=True, exist_ok=True)
    with multiprocessing.Pool() as pool:
        pool.map(_make, [(str(folder), i) for i in range(count)], chunksize=64)


def write_project(ws: Path, folder: Path, captions: str = "textfile") -> None:
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "project.toml").write_text(
        "[model]\nmodel_flavour = 'tiny-random'\nbase_model_precision = 'no_change'\n"
        "[training]\noptimizer = 'torch-adamw'\n"
        f"[[datasets]]\nid = 'bench'\ninstance_data_dir = '{folder}'\nresolution = 512\n"
        f"resolution_type = 'pixel'\ncrop_aspect = 'preserve'\ncaption_strategy = '{captions}'\n"
    )


def timed(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall seconds, median CPU seconds of this process (what an idle machine would
    show as wall time when the box is shared), and the last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, help="reuse (or create) the images here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from PIL import Image

    from fluxtui.core import config, datasets, rules

    tmp = Path(tempfile.mkdtemp(prefix="fluxtui-bench-scan-"))
    folder = args.dir or tmp / "images"
    try:
        if not (folder.exists() and any(folder.rglob("img_*"))):
            t0 = time.perf_counter()
            make_images(folder, args.count)
            print(f"made {args.count} images in {time.perf_counter() - t0:.1f} s ({folder})")
        ws = tmp / "ws"
        write_project(ws, folder.resolve())

        def validate():
            project, problems = config.load(ws / "project.toml")
            assert project is not None, problems
            return rules.check_all(project)

        cache = None

        def cold():
            if cache is not None:
                cache.unlink(missing_ok=True)
            return validate()

        project, _ = config.load(ws / "project.toml")
        cache = datasets.cache_file(project, "bench")
        cold_s, cold_cpu, (reports, problems) = timed(cold, max(3, args.repeats // 2))
        n = len(reports[0].images) + len(reports[0].skipped)
        validate()  # leave the cache in place
        warm_s, warm_cpu, (reports, _) = timed(validate, args.repeats)

        # The same images with file-name captions: no .txt to stat, half the system calls.
        write_project(tmp / "ws-filename", folder.resolve(), "filename")

        def validate_filename():
            project, _ = config.load(tmp / "ws-filename" / "project.toml")
            return rules.check_all(project)

        validate_filename()
        plain_s, plain_cpu, _ = timed(validate_filename, args.repeats)
        report = reports[0]
        print(
            f"scanned {n} files: {len(report.images)} usable, {report.captioned} captioned, "
            f"{len(report.buckets)} buckets, {len(report.skipped)} skipped, {len(problems)} problems"
        )

        paths = [i.path for i in report.images]

        def decode_all():
            for p in paths:
                with Image.open(p) as im:
                    im.load()

        def lazy_open_all():
            for p in paths:
                with Image.open(p) as im:
                    im.size  # noqa: B018 - header only

        decode_s, decode_cpu, _ = timed(decode_all, 1)
        lazy_s, lazy_cpu, _ = timed(lazy_open_all, 3)

        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; images/s by wall time and by CPU time")
        rows = [
            ("cold validate (no scan cache)", cold_s, cold_cpu),
            ("warm validate (scan cache)", warm_s, warm_cpu),
            ("  same, filename captions", plain_s, plain_cpu),
            ("Pillow full decode", decode_s, decode_cpu),
            ("Pillow lazy open (header only)", lazy_s, lazy_cpu),
        ]
        for name, wall, cpu in rows:
            print(f"  {name:<32} {n / wall:>10,.0f} wall {n / cpu:>10,.0f} cpu   ({wall * 1000:,.0f} ms)")
        print(
            f"cold vs full decode: {decode_s / cold_s:.0f}x (wall), {decode_cpu / cold_cpu:.0f}x (cpu); target >= 20x"
        )
        print(f"warm: {n / warm_s:,.0f} images/s (wall), {n / warm_cpu:,.0f} (cpu); target >= 50,000")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
