"""An engine's job as EMR steps, through command-runner.jar: an mrjob job's stages as Hadoop streaming steps,
one per stage; a Spark job as one spark-submit step."""
import posixpath
import shlex

from movielens_emr.emr.wheelhouse import NodePython
from movielens_emr.engine.mrjob_jobs import job_instance

# A failed stage cancels the stages after it and leaves the cluster for the teardown to terminate.
ACTION_ON_FAILURE = "CANCEL_AND_WAIT"
DEFAULT_NODE = NodePython()


def stage_output_uri(output_uri, stage):
    return f"{output_uri.rstrip('/')}/stage-{stage}"


def local_name(task_file):
    """The name a shipped file has in a task's working folder: the last part of its URI."""
    return posixpath.basename(task_file.uri)


def build_stage_steps(job, shipped_uris, input_uris, output_uri, run_id, node=DEFAULT_NODE):
    """One EMR step per stage of job (protocol.MrjobJob) and of its class's steps(); shipped_uris are the
    staged copies of job.shipped_files, the job file first. Each stage's tasks get the shipped files and
    the TaskFiles it reads in their working folder (-files), the latter named by their local name in the
    job's options, and run under node's Python with the packages the bootstrap installed for it."""
    stages = job_instance(job).steps()
    if len(stages) != len(job.stage_names):
        raise ValueError(f"the job has {len(stages)} stages; its engine names {len(job.stage_names)}")
    job_name = posixpath.basename(shipped_uris[0])
    shipped = [f"{uri}#{posixpath.basename(uri)}" for uri in shipped_uris]
    steps = []
    for number, stage in enumerate(stages, start=1):
        inputs = input_uris if number == 1 else [stage_output_uri(output_uri, number - 1)]
        read = [f"{task_file.uri}#{local_name(task_file)}" for task_file in job.task_files
                if task_file.read_in(number)]
        args = ["hadoop-streaming", "-files", ",".join([*shipped, *read]),
                "-D", f"mapreduce.job.reduces={int(job.reduce_tasks)}",
                "-D", f"mapreduce.job.name=movielens-similarity stage {number} {run_id}",
                "-cmdenv", f"PYTHONPATH={node.packages_dir}"]
        for uri in inputs:
            args += ["-input", uri]
        args += ["-output", stage_output_uri(output_uri, number)]
        args += _task_commands(stage.description(number - 1), number - 1, job_name,
                               job.task_options(number, local_name), node.binary)
        steps.append({
            "Name": step_name(number, job.stage_names, run_id),
            "ActionOnFailure": ACTION_ON_FAILURE,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
        })
    return steps


def step_name(number, stage_names, run_id):
    return f"stage {number} of {len(stage_names)}: {stage_names[number - 1]} [{run_id}]"


def _task_commands(description, step_num, job_name, task_args, python):
    commands = []
    for task_type in ("mapper", "combiner", "reducer"):
        if task_type in description:
            command = [python, job_name, f"--step-num={step_num}", f"--{task_type}", *task_args]
            commands += [f"-{task_type}", shlex.join(command)]
        elif task_type == "mapper":
            commands += ["-mapper", "cat"]
    return commands


def build_spark_step(job, shipped_uris, input_uris, output_uri, run_id, node=DEFAULT_NODE,
                     event_log_uri=None):
    """The EMR step of a SparkJob: spark-submit through command-runner.jar, in YARN's cluster deploy mode
    (the driver runs in the application master's container, on a core node). shipped_uris are the staged
    copies of job.shipped_files, the script first: the script is run from S3, its support files go with
    --py-files, the TaskFiles with --files (in the driver's working folder under their local name). The
    driver and the executors' Python workers run under node's Python with the packages the bootstrap
    installed for it; the event log goes to event_log_uri, where the run's figures read it."""
    script, support = shipped_uris[0], shipped_uris[1:]
    script_name = posixpath.splitext(posixpath.basename(script))[0]
    properties = [("spark.pyspark.python", node.binary),
                  ("spark.yarn.appMasterEnv.PYTHONPATH", node.packages_dir),
                  ("spark.executorEnv.PYTHONPATH", node.packages_dir),
                  ("spark.app.name", f"movielens-{script_name} {run_id}"),
                  *job.properties]
    if event_log_uri:
        properties += [("spark.eventLog.enabled", "true"), ("spark.eventLog.dir", event_log_uri)]
    args = ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn"]
    for name, value in properties:
        args += ["--conf", f"{name}={value}"]
    if support:
        args += ["--py-files", ",".join(support)]
    if job.task_files:
        args += ["--files", ",".join(f"{task_file.uri}#{local_name(task_file)}"
                                     for task_file in job.task_files)]
    args += [script, *job.script_args(input_uris, stage_output_uri(output_uri, 1), local_name)]
    return {"Name": step_name(1, job.stage_names, run_id), "ActionOnFailure": ACTION_ON_FAILURE,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}
