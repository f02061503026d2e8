"""The seam between the pipeline and what computes a run's result.

An Engine says what to run; the targets (emr/, local/) say how. The DAG's callables ask the run's
engine (engine.registry) for the files its tasks need, for the job of one run, where its final
output is, how to collect it and which figures its counters give; the EMR target turns the job into
EMR steps, the local target runs it on this machine. A job is one of two kinds: an MrjobJob (Hadoop
streaming steps on a cluster, mrjob's local runner here) or a SparkJob (one spark-submit step on a
cluster, Spark's local mode here). No module outside an engine's own knows what it computes.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class TaskFile:
    """A file a job's tasks read, named by one of the job's options: a cluster ships it beside the tasks
    and passes its local name, this machine passes its URI."""

    option: str
    uri: str
    # The stages (from 1) whose tasks read it; empty: every stage.
    stages: tuple[int, ...] = ()

    def read_in(self, stage):
        return not self.stages or stage in self.stages


@dataclass(frozen=True)
class MrjobJob:
    """One run of an mrjob job: Hadoop streaming steps on a cluster, mrjob's local runner here."""

    job_file: Path
    job_class: str
    # One name per stage of the job's steps(), as EMR's step names show them.
    stage_names: tuple[str, ...]
    # The job's own options (no runner options, no inputs, no TaskFile).
    options: tuple[str, ...]
    task_files: tuple[TaskFile, ...] = ()
    # Reduce tasks of each stage on a cluster (mrjob's local runner has one a parallel task).
    reduce_tasks: int = 1
    # Modules the job file imports from its own folder: shipped beside it.
    support_files: tuple[Path, ...] = ()

    def task_options(self, stage, name_of):
        """The options of a stage's tasks: the job's own, then each TaskFile the stage reads, named by
        name_of(task_file) (a cluster's local link name, or the file's URI)."""
        files = [arg for task_file in self.task_files if task_file.read_in(stage)
                 for arg in (task_file.option, name_of(task_file))]
        return [*self.options, *files]

    def options_with_uris(self):
        """The options of a run in one process (mrjob's local runner): the job's own and every TaskFile's
        URI, whichever stage reads it."""
        files = [arg for task_file in self.task_files for arg in (task_file.option, task_file.uri)]
        return [*self.options, *files]

    @property
    def shipped_files(self):
        """The job file, then its support files: what a cluster's tasks run."""
        return (self.job_file, *self.support_files)


@dataclass(frozen=True)
class SparkJob:
    """One run of a PySpark script, in one stage: a spark-submit step on a cluster (cluster deploy mode),
    Spark's local mode here. The script reads its inputs and writes its output folder itself, through
    the URIs it is given (s3:// on a cluster)."""

    script: Path
    stage_names: tuple[str, ...]
    # The script's own options; URIs in them are read by Spark itself, on either target.
    options: tuple[str, ...]
    # Files the driver opens as local files: shipped beside it on a cluster (named by their local name),
    # passed by their URI here.
    task_files: tuple[TaskFile, ...] = ()
    # Modules the script imports from its own folder: --py-files, on the driver's and executors' path.
    support_files: tuple[Path, ...] = ()
    # Spark properties of the run (the serializer...), as spark-submit's --conf.
    properties: tuple[tuple[str, str], ...] = ()
    # The options the script takes its ratings files (one or more URIs) and output folder by.
    input_option: str = "--ratings"
    output_option: str = "--output"

    def script_args(self, input_uris, output_uri, name_of):
        """The script's arguments: its options, each TaskFile named by name_of(task_file), the inputs,
        the output folder."""
        files = [arg for task_file in self.task_files for arg in (task_file.option, name_of(task_file))]
        return [*self.options, *files, self.input_option, *input_uris, self.output_option, output_uri]

    @property
    def shipped_files(self):
        """The script, then its support files: what a cluster runs."""
        return (self.script, *self.support_files)


class Engine(Protocol):
    """What computes a run's result: `name` is the trigger form's choice, `stage_names` its stages."""

    name: str
    stage_names: tuple[str, ...]

    def shipped_files(self) -> tuple[Path, ...]:
        """The files its tasks run (the job file first), staged to a cluster before its steps."""

    def prepare(self, storage, run_prefix, config, ratings_paths) -> dict:
        """Anything the run's job needs that is measured on its input (written under run_prefix/job/),
        once the dataset is staged; merged into the staged record that the other tasks get."""

    def job(self, config, staged) -> MrjobJob | SparkJob:
        """The run's job: its options for config, its task files (staged's URIs) and its reduce tasks (an
        MrjobJob), or its Spark properties (a SparkJob)."""

    def collect(self, storage, output_folder, results_prefix) -> dict:
        """Write the run's results under results_prefix from the part files in output_folder; a summary."""

    def figures(self, counters, collected, staged) -> dict:
        """The engine's own figures for metrics.json: from the run's counters, its collected summary and
        what prepare staged."""


def needs_spark(engine):
    """Whether the engine's jobs are SparkJobs, so that a cluster needs the Spark application (an engine
    says so by `applications`, the EMR applications it needs; without it, Hadoop alone)."""
    return "Spark" in getattr(engine, "applications", ())


def final_output_folder(run_prefix, engine):
    """Where the engine's last stage writes its part files, on EMR and on the local target alike."""
    return f"{run_prefix}/output/stage-{len(engine.stage_names)}"
