"""Task callables' checks that need no scheduler: the nodes' Python against the run's EMR release, the local
job's options."""
import pytest

from movielens_emr import tasks
from movielens_emr.params import InvalidParam, validate_run_config


@pytest.fixture
def emr_deployment(monkeypatch):
    monkeypatch.setattr(tasks, "max_node_count", lambda: 20)
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", "s3://bucket/movielens")


def test_python_3_11_on_a_release_without_it_fails_validation_naming_the_field(emr_deployment, monkeypatch):
    monkeypatch.setenv("MOVIELENS_EMR_PYTHON", "3.11")
    with pytest.raises(InvalidParam, match=r"^release_label: emr-7.0.0 has no Python 3.11"):
        tasks.validate_config({"target": "emr", "release_label": "emr-7.0.0"})
    config = tasks.validate_config({"target": "emr", "release_label": "emr-7.1.0"})
    assert config["release_label"] == "emr-7.1.0"


def test_an_unknown_node_python_fails_validation_naming_the_setting(emr_deployment, monkeypatch):
    monkeypatch.setenv("MOVIELENS_EMR_PYTHON", "3.10")
    with pytest.raises(InvalidParam, match="^MOVIELENS_EMR_PYTHON is '3.10'"):
        tasks.validate_config({"target": "emr"})


def test_the_local_target_does_not_care_about_the_nodes_python(monkeypatch, storage_root):
    monkeypatch.setattr(tasks, "max_node_count", lambda: 20)
    monkeypatch.setenv("MOVIELENS_EMR_PYTHON", "3.10")
    assert tasks.validate_config({"target": "local"})["target"] == "local"


@pytest.mark.parametrize("plan, extra", [
    ({"uri": "/root/runs/r/job/block_plan.json", "planned_skew": 1.02},
     ["--block-plan", "/root/runs/r/job/block_plan.json"]),
    ({"uri": None, "skipped": "MemoryError: "}, []),
])
def test_the_local_job_gets_the_runs_blocks_and_its_block_plan_if_any(plan, extra):
    config = validate_run_config({"target": "local", "dataset": "ml-25m", "node_count": 4}, 20)
    staged = {"movies_uri": "/root/datasets/ml-25m/c/movies.csv", "block_plan": plan}
    args = tasks.local_job_args(config, staged)
    assert args[args.index("--movie-blocks") + 1] == "23"  # stage2_layout's, as the plan was made for
    assert args[args.index("--items") + 1] == "/root/datasets/ml-25m/c/movies.csv"
    assert args[len(args) - len(extra):] == extra and args.count("--block-plan") == len(extra) // 2
