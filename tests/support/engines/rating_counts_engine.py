"""An engine that only the tests register
(MOVIELENS_ENGINES=tests.support.engines.rating_counts_engine:ENGINE): a one-stage mrjob job that
counts each movie's ratings. It touches no pipeline module: what the seam promises, that an engine
is its own module and nothing else changes, is what its test checks."""
from pathlib import Path

from movielens_emr.engine.protocol import MrjobJob

JOB_FILE = Path(__file__).resolve().parent / "movie_rating_counts.py"
RESULTS_FILE = "rating_counts.csv"


class RatingCountsEngine:
    name = "rating-counts"
    stage_names = ("count each movie's ratings",)
    # Its tasks hold one movie's count at a time; a test raises it to see an instance type refused.
    memory_mb = 100

    def task_memory_mb(self, config):
        return self.memory_mb

    def shipped_files(self):
        return (JOB_FILE,)

    def prepare(self, storage, run_prefix, config, ratings_paths):
        return {}

    def job(self, config, staged):
        return MrjobJob(job_file=JOB_FILE, job_class="MRMovieRatingCounts", stage_names=self.stage_names,
                        options=(), reduce_tasks=2)

    def collect(self, storage, output_folder, results_prefix):
        counts = {}
        for key in storage.list_keys(output_folder):
            if key.rsplit("/", 1)[-1].startswith("part-"):
                for line in storage.get_bytes(key).decode().splitlines():
                    movie, count = line.split(",")
                    counts[int(movie)] = int(count)
        lines = [f"{movie},{count}" for movie, count in sorted(counts.items())]
        storage.put_bytes(("movie_id,ratings\n" + "".join(f"{line}\n" for line in lines)).encode(),
                          f"{results_prefix}/{RESULTS_FILE}")
        return {"movies": len(counts), "ratings": sum(counts.values()),
                "rating_counts_csv": storage.uri(f"{results_prefix}/{RESULTS_FILE}")}

    def figures(self, counters, collected, staged):
        return {"movies_counted": collected["movies"]}


ENGINE = RatingCountsEngine()
