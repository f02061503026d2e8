"""Task callables' checks that need no scheduler: the nodes' Python against the run's EMR release."""
import pytest

from movielens_emr import tasks
from movielens_emr.params import InvalidParam


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
