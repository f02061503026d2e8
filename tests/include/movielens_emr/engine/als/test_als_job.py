"""The als engine's script options and Spark properties for a run."""
import pytest

from movielens_emr.config.params import validate_run_config
from movielens_emr.engine.als.job import KRYO_SERIALIZER, SEED, script_options, spark_properties


def config(**params):
    return validate_run_config({"engine": "als", **params}, max_node_count=20, engines=("similarity", "als"))


def option(options, name):
    return options[options.index(name) + 1]


def test_the_forms_hyperparameters_become_the_scripts_options():
    options = script_options(config(als_rank=7, als_max_iter=3, als_reg_param=0.5, als_alpha=40,
                                    als_user_blocks=4, sample_fraction=0.5), "s3://b/train.tsv")
    assert [option(options, name) for name in ("--rank", "--max-iter", "--reg-param", "--alpha")] == [
        "7", "3", "0.5", "40.0"]
    assert (option(options, "--user-blocks"), option(options, "--item-blocks")) == ("4", "10")
    assert option(options, "--seed") == str(SEED) and option(options, "--sample-fraction") == "0.5"
    assert option(options, "--evaluation-train") == "s3://b/train.tsv"


def test_without_a_split_there_is_no_evaluation_option():
    assert "--evaluation-train" not in script_options(config())


def test_the_loss_per_iteration_is_asked_of_the_script_only_when_the_form_asks_for_it():
    assert "--loss-per-iteration" not in script_options(config())
    assert script_options(config(als_loss_per_iteration=True))[-1] == "--loss-per-iteration"


def test_the_loss_per_iteration_field_takes_only_a_boolean():
    with pytest.raises(ValueError, match="als_loss_per_iteration"):
        config(als_loss_per_iteration="yes")


@pytest.mark.parametrize(("params", "partitions"), [({"target": "local", "node_count": 3}, "3"),
                                                    ({"target": "emr", "node_count": 3}, "8")])
def test_kryo_on_and_a_shuffle_partition_per_task_slot(params, partitions):
    properties = dict(spark_properties(config(**params)))
    assert properties == {"spark.serializer": KRYO_SERIALIZER, "spark.sql.shuffle.partitions": partitions}
