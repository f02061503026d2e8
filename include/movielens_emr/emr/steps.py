"""The job's MapReduce stages as EMR steps: Hadoop streaming via command-runner.jar, one step per stage."""
import posixpath
import shlex

from movielens_emr.emr.wheelhouse import NodePython

STAGE_NAMES = (
    "group ratings by user", "pair statistics and similarity", "both directions, titles and ranking")
# A failed stage cancels the stages after it and leaves the cluster for the teardown to terminate.
ACTION_ON_FAILURE = "CANCEL_AND_WAIT"
DEFAULT_NODE = NodePython()
# The stage whose mappers read a --block-plan (each user's ratings split into the plan's blocks).
PLAN_STAGE = 2


def stage_output_uri(output_uri, stage):
    return f"{output_uri.rstrip('/')}/stage-{stage}"


def build_stage_steps(job, task_args, job_uri, movies_uri, input_uris, output_uri, reducers, run_id,
                      node=DEFAULT_NODE, block_plan_uri=None):
    """One EMR step per stage of job.steps(); task_args are the job's options with --items a local name. The
    tasks run under node's Python with the packages the bootstrap installed for it on their PYTHONPATH.
    A block_plan_uri reaches stage 2's tasks as the movies file does: a local name, --block-plan <name>."""
    job_name, items_name = posixpath.basename(job_uri), posixpath.basename(movies_uri)
    files = f"{job_uri}#{job_name},{movies_uri}#{items_name}"
    stages = job.steps()
    if len(stages) != len(STAGE_NAMES):
        raise ValueError(f"the job has {len(stages)} stages; the pipeline names {len(STAGE_NAMES)}")
    steps = []
    for number, stage in enumerate(stages, start=1):
        inputs = input_uris if number == 1 else [stage_output_uri(output_uri, number - 1)]
        stage_files, stage_args = _with_block_plan(number, files, task_args, block_plan_uri)
        args = ["hadoop-streaming", "-files", stage_files,
                "-D", f"mapreduce.job.reduces={int(reducers)}",
                "-D", f"mapreduce.job.name=movielens-similarity stage {number} {run_id}",
                "-cmdenv", f"PYTHONPATH={node.packages_dir}"]
        for uri in inputs:
            args += ["-input", uri]
        args += ["-output", stage_output_uri(output_uri, number)]
        args += _task_commands(stage.description(number - 1), number - 1, job_name, stage_args, node.binary)
        steps.append({
            "Name": step_name(number, run_id),
            "ActionOnFailure": ACTION_ON_FAILURE,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
        })
    return steps


def _with_block_plan(number, files, task_args, block_plan_uri):
    """A stage's -files and task options: stage 2's also name the plan, under its own file name."""
    if not block_plan_uri or number != PLAN_STAGE:
        return files, task_args
    plan_name = posixpath.basename(block_plan_uri)
    return f"{files},{block_plan_uri}#{plan_name}", [*task_args, "--block-plan", plan_name]


def step_name(number, run_id):
    return f"stage {number} of {len(STAGE_NAMES)}: {STAGE_NAMES[number - 1]} [{run_id}]"


def _task_commands(description, step_num, job_name, task_args, python):
    commands = []
    for task_type in ("mapper", "combiner", "reducer"):
        if task_type in description:
            command = [python, job_name, f"--step-num={step_num}", f"--{task_type}", *task_args]
            commands += [f"-{task_type}", shlex.join(command)]
        elif task_type == "mapper":
            commands += ["-mapper", "cat"]
    return commands
