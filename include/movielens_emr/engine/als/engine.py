"""The als engine behind the seam (protocol.Engine): the PySpark script of jobs/als_recommender.py (with the
similarity job's kernel beside it) for a run, its evaluation split made before it, its results collected
after it, and its figures."""
import logging

from movielens_emr.engine.als.evaluation_split import stage_evaluation_split
from movielens_emr.engine.als.job import (
    KERNEL_FILE,
    SCRIPT_FILE,
    STAGE_NAMES,
    script_options,
    spark_properties,
)
from movielens_emr.engine.als.results import collect_results
from movielens_emr.engine.protocol import SparkJob, TaskFile

log = logging.getLogger(__name__)
ALS_ENGINE = "als"
# The script's figures that metrics.json keeps, under these names.
FIGURES = {"ratings_read": "input_ratings", "bad_lines": "bad_lines", "ratings_used": "ratings_used",
           "users": "users", "movies": "movies", "iterations": "als_iterations",
           "fit_seconds": "als_fit_seconds",
           "seconds_per_iteration": "als_seconds_per_iteration", "training_loss": "als_training_loss",
           "per_iteration": "als_per_iteration", "serializer": "spark_serializer",
           "spark_version": "spark_version", "python_version": "spark_driver_python"}


class AlsEngine:
    """Implicit-feedback matrix factorisation (pyspark.ml's ALS) in one Spark application."""

    name = ALS_ENGINE
    stage_names = STAGE_NAMES
    # The script's exceptions for an input at fault (jobs/als_recommender.py): the same input fails the same
    # way again, so a local run that ends with one is not retried.
    input_errors = ("TooManyBadLines", "NoRatings")
    # A cluster runs it with Spark (and Hadoop's YARN under it).
    applications = ("Hadoop", "Spark")

    def shipped_files(self):
        """The script, then the kernel it imports from beside it."""
        return (SCRIPT_FILE, KERNEL_FILE)

    def prepare(self, storage, run_prefix, config, ratings_paths):
        """The evaluation split, made on the run's own ratings (evaluation_split.stage_evaluation_split)."""
        return {"evaluation_split": stage_evaluation_split(storage, run_prefix, config, ratings_paths)}

    def job(self, config, staged):
        """The script with the run's hyperparameters, the movies file for --items (read by the driver) and
        the split's training part for --evaluation-train (read by Spark)."""
        split = staged.get("evaluation_split") or {}
        return SparkJob(script=SCRIPT_FILE, stage_names=STAGE_NAMES,
                        options=tuple(script_options(config, split.get("train_uri"))),
                        task_files=(TaskFile("--items", staged["movies_uri"]),),
                        support_files=(KERNEL_FILE,), properties=spark_properties(config))

    def collect(self, storage, output_folder, results_prefix):
        """results/similarities.csv, top_neighbours.json, recommendations.csv and evaluation.json."""
        summary = collect_results(storage, output_folder, results_prefix)
        log.info("collected %d nearest-movie pairs of %d movies into %s, and %d recommendations",
                 summary["output_pairs"], summary["movies"], summary["similarities_csv"],
                 summary["recommendation_rows"])
        return summary

    def figures(self, counters, collected, staged):
        """The script's own figures (ratings read, iterations, fit time, training loss), the pairs written
        and the evaluation; a Spark run has no Hadoop counters."""
        job = collected.get("job_figures") or {}
        return {"output_pairs": collected["output_pairs"],
                **{name: job.get(key) for key, name in FIGURES.items()},
                "recommendation_rows": collected.get("recommendation_rows"),
                "evaluation": collected.get("evaluation")}


ENGINE = AlsEngine()
