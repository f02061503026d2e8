"""The instance catalogue: the types a run may choose and what the pipeline reads of each."""
import pytest

from movielens_emr.config.instances import (
    STREAMING_JVM_MB,
    UnknownInstanceType,
    catalogue,
    instance_type,
    memory_fit_error,
)
from movielens_emr.config.params import validate_run_config
from movielens_emr.sizing.prices import HOURLY_PRICES_USD

REQUIRED = ("m5.xlarge", "m5.2xlarge", "c5.2xlarge", "r5.xlarge", "m6g.xlarge", "m7g.xlarge")


def test_the_catalogue_holds_every_type_the_issue_names_with_every_figure():
    assert set(REQUIRED) <= set(catalogue())
    for instance in catalogue().values():
        assert instance.vcpus > 0 and instance.memory_gib > 0 and instance.usd_per_hour > 0
        assert instance.architecture in ("x86_64", "aarch64")
        assert instance.map_container_mb <= instance.reduce_container_mb <= instance.yarn_node_mb
        assert instance.yarn_node_mb < instance.memory_gib * 1024  # the daemons and the OS keep the rest
        assert HOURLY_PRICES_USD[instance.name] == instance.usd_per_hour
    assert instance_type("m6g.xlarge").architecture == "aarch64"
    assert instance_type("r5.xlarge").reduce_container_mb == 12288


def test_the_trigger_form_offers_the_catalogue_and_refuses_any_other_type():
    assert validate_run_config({"instance_type": "r5.xlarge"}, 20).instance_type == "r5.xlarge"
    with pytest.raises(ValueError, match="instance_type: 'x1.32xlarge' is not one of"):
        validate_run_config({"instance_type": "x1.32xlarge"}, 20)
    with pytest.raises(UnknownInstanceType, match="not in the instance catalogue"):
        instance_type("x1.32xlarge")


def test_a_task_larger_than_the_python_share_of_a_container_is_refused_naming_both():
    c5 = instance_type("c5.xlarge")
    assert memory_fit_error(c5.reduce_container_mb - STREAMING_JVM_MB, c5, "a task") is None
    error = memory_fit_error(4000, c5, "the similarity engine's largest task")
    assert "c5.xlarge cannot hold the similarity engine's largest task: it needs about 4,000 MB" in error
    assert "reduce container is 3,072 MB (2,048 MB for the task's Python" in error
