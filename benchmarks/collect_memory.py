"""Peak memory and time of collecting a run's results from part files: streamed (collect.py) and, for
comparison, all rows in memory at once (how collect_results worked before), each in a process of its own."""
import argparse
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "include"))

from movielens_emr.data.storage import LocalStorage  # noqa: E402
from movielens_emr.engine.similarity import (  # noqa: E402
    collect,
    results,
)

OUTPUT, RESULTS = "runs/bench/output/stage-3", "runs/bench/results"
MB = 1024 * 1024  # ru_maxrss is in KiB on Linux


def write_part_files(folder, pairs, movies, parts):
    """`pairs` job output lines about `movies` movies with MovieLens-like titles, dealt into `parts` files."""
    draw = random.Random(1)
    folder.mkdir(parents=True)
    files = [open(folder / f"part-{number:05d}", "w", encoding="utf-8") for number in range(parts)]
    for number in range(pairs):
        movie, similar = draw.randint(1, movies), draw.randint(1, movies)
        line = (json.dumps([str(movie), f"Movie number {movie}, The ({1900 + movie % 120})"]) + "\t"
                + json.dumps([str(similar), f"Movie number {similar}, The ({1900 + similar % 120})",
                              round(draw.random(), 12), draw.randint(2, 3000)]))
        files[number % parts].write(line + "\n")
    for file in files:
        file.close()


def collect_in_memory(storage, output_folder, results_folder):
    """The earlier collect_results: every row parsed and sorted in memory, the files built as strings."""
    keys = collect.part_keys(storage, output_folder)
    rows = results.sorted_rows(results.parse_output_line(line) for key in keys
                               for line in storage.get_bytes(key).decode("utf-8").splitlines() if line)
    storage.put_bytes(results.similarities_csv(rows).encode(), f"{results_folder}/similarities.csv")
    neighbours = results.top_neighbours(rows)
    storage.put_bytes(json.dumps(neighbours, ensure_ascii=False, indent=1).encode(),
                      f"{results_folder}/top_neighbours.json")


def measured(method, root, queue):
    """Runs in a child process: its peak RSS before and after collecting, and the seconds it took."""
    storage, before = LocalStorage(root), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if method == "streamed":
        collect.collect_output(storage, OUTPUT, RESULTS)
    else:
        collect_in_memory(storage, OUTPUT, RESULTS)
    queue.put((before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started))


def run(method, root):
    queue = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(target=measured, args=(method, root, queue))
    child.start()
    before, peak, seconds = queue.get()
    child.join()
    return before, peak, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=10_000_000, help="output lines (default 10^7)")
    parser.add_argument("--movies", type=int, default=20_000)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=["streamed", "in-memory"],
                        choices=["streamed", "in-memory"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="collect-memory-") as root:
        write_part_files(Path(root) / OUTPUT, args.pairs, args.movies, args.parts)
        size = sum(path.stat().st_size for path in (Path(root) / OUTPUT).iterdir())
        print(f"{args.pairs:,} pairs of {args.movies:,} movies in {args.parts} part files, "
              f"{size / MB:,.0f} MB; RUN_ROWS {collect.RUN_ROWS:,}, MERGE_FAN_IN {collect.MERGE_FAN_IN}")
        print(f"{'method':<10} {'peak RSS':>10} {'before':>10} {'seconds':>8}  result files")
        for method in args.methods:
            before, peak, seconds = run(method, root)
            files = ", ".join(f"{path.name} {path.stat().st_size / MB:,.0f} MB"
                              for path in sorted((Path(root) / RESULTS).iterdir()))
            print(f"{method:<10} {peak / 1024:>7,.0f} MB {before / 1024:>7,.0f} MB {seconds:>8,.1f}  {files}")
            LocalStorage(root).delete_prefix(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
