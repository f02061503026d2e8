"""The als engine's job: the PySpark script of jobs/ with the similarity job's kernel beside it, its options
for one run and its Spark properties."""
import functools
import importlib
import sys
from pathlib import Path

from movielens_emr.config.targets import target_named

SCRIPT_FILE = Path(__file__).resolve().parents[4] / "jobs" / "als_recommender.py"
# The module the script imports from its own folder (the ratings and titles rules of both engines).
KERNEL_FILE = SCRIPT_FILE.parent / "similarity_kernel.py"
STAGE_NAMES = ("fit ALS, nearest movies and recommendations",)
# Spark's defaults for ALS's blocks, used when the form leaves them empty.
SPARK_DEFAULT_BLOCKS = 10
SEED = 42
KRYO_SERIALIZER = "org.apache.spark.serializer.KryoSerializer"


@functools.cache
def kernel():
    """The jobs' ratings and titles rules (jobs/similarity_kernel.py), imported by its own name from its
    folder as the script imports it: the module the similarity job's loading gives, without that job."""
    folder = str(KERNEL_FILE.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    return importlib.import_module(KERNEL_FILE.stem)


def script_options(config, evaluation_train_uri=None):
    """The script's own options for a run's parameters (no inputs, no output, no files)."""
    options = [
        "--rank", str(config.als_rank),
        "--max-iter", str(config.als_max_iter),
        "--reg-param", repr(float(config.als_reg_param)),
        "--alpha", repr(float(config.als_alpha)),
        "--user-blocks", str(config.als_user_blocks or SPARK_DEFAULT_BLOCKS),
        "--item-blocks", str(config.als_item_blocks or SPARK_DEFAULT_BLOCKS),
        "--seed", str(SEED),
        "--sample-fraction", repr(float(config.sample_fraction)),
    ]
    if evaluation_train_uri:
        options += ["--evaluation-train", evaluation_train_uri]
    if config.als_loss_per_iteration:
        options.append("--loss-per-iteration")
    return options


def spark_properties(config):
    """Kryo serialisation, and as many shuffle partitions as the run has task slots (Spark SQL's default,
    200, is a task per partition: for MovieLens-sized data, mostly scheduling)."""
    slots = target_named(config.target).task_slots(config.node_count, config.instance_type)
    return (("spark.serializer", KRYO_SERIALIZER),
            ("spark.sql.shuffle.partitions", str(max(1, slots))))
