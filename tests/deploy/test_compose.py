"""docker-compose.yaml, Dockerfile, .env.example: valid Compose, the services it needs, no secret inlined."""
import json
import re
import subprocess

import jsonschema
import pytest
import yaml

from movielens_emr.local.spark_runner import SUPPORTED_JAVA

from tests.conftest import REPO, SHARED

COMPOSE_FILE = REPO / "docker-compose.yaml"
COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer",
}
ENV_EXAMPLE = (REPO / ".env.example").read_text()
DOCKERFILE = (REPO / "Dockerfile").read_text()
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|ACCESS_KEY|PRIVATE_KEY", re.I)
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?::?-|:?\?)[^}]*)?\}")
ONLY_INTERPOLATION = re.compile(rf"^(?:{INTERPOLATION.pattern})$")


def strings(node, path=()):
    """Every (path, string value) in a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


def interpolated(text):
    """The ${...} interpolations in a Compose string; $$ is an escaped dollar, left to the container."""
    return list(INTERPOLATION.finditer(text.replace("$$", "")))


def environment(service):
    env = SERVICES[service].get("environment", {})
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def pinned(requirement):
    requirements = (REPO / "requirements.txt").read_text()
    return re.search(rf"^{re.escape(requirement)}==(\S+)$", requirements, re.M).group(1)


def test_compose_file_is_valid_against_the_compose_specification():
    schema = json.loads((SHARED / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(COMPOSE)


def test_every_dollar_is_an_interpolation_or_escaped():
    for path, text in strings(COMPOSE):
        assert "$" not in INTERPOLATION.sub("", text.replace("$$", "")), (path, text)


def test_services_are_postgres_init_and_the_four_airflow_components():
    assert set(SERVICES) == {"postgres", "airflow-init", *AIRFLOW_SERVICES}
    for service, command in AIRFLOW_SERVICES.items():
        assert SERVICES[service]["command"] == command


def test_airflow_services_run_the_image_built_from_the_dockerfile():
    specs = [SERVICES[name] for name in (*AIRFLOW_SERVICES, "airflow-init")]
    images = {(spec["build"], spec["image"]) for spec in specs}
    assert len(images) == 1 and next(iter(images))[0] == "."


def test_dockerfile_extends_the_official_image_of_the_pinned_airflow_and_python():
    pyproject = (REPO / "pyproject.toml").read_text()
    python = re.search(r'requires-python = "==(\d+\.\d+)\.\*"', pyproject).group(1)
    image = f"apache/airflow:{pinned('apache-airflow')}-python{python}"
    assert re.findall(r"^FROM (\S+)", DOCKERFILE, re.M) == [image]


def test_dockerfile_installs_the_pinned_requirements_under_their_constraints():
    install = r"pip install --no-cache-dir\s+(\\\n\s*)?-r \S*requirements\.txt -c \S*constraints\.txt"
    assert re.search(install, DOCKERFILE)
    assert re.search(r"^ENV PYTHONPATH=/opt/airflow/include$", DOCKERFILE, re.M)


def test_the_image_runs_as_airflow_and_is_root_only_to_install_java():
    assert re.findall(r"^USER (\S+)", DOCKERFILE, re.M) == ["root", "airflow"]
    as_root = DOCKERFILE[DOCKERFILE.index("USER root"):DOCKERFILE.index("USER airflow")]
    commands = [line for line in as_root.splitlines() if line.startswith("RUN ")]
    assert len(commands) == 1 and "openjdk-" in as_root and "pip" not in as_root


def test_the_image_has_a_java_runtime_spark_runs_on_for_the_als_engine():
    """Spark's local mode (the als engine on the local target) needs Java: Debian's headless runtime of a
    version spark_runner accepts, and JAVA_HOME naming it."""
    installed = re.search(r"apt-get install -y --no-install-recommends openjdk-(\d+)-jre-headless",
                          DOCKERFILE)
    assert installed and int(installed.group(1)) in SUPPORTED_JAVA
    java_home = re.search(r"^ENV JAVA_HOME=(\S+)$", DOCKERFILE, re.M).group(1)
    jvm = f"/usr/lib/jvm/java-{installed.group(1)}-openjdk-"
    linked = rf'ln -s "{re.escape(jvm)}\$\(dpkg --print-architecture\)" {re.escape(java_home)}( |$)'
    assert re.search(linked, DOCKERFILE, re.M)


def test_no_requirements_are_installed_at_container_start():
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE_FILE.read_text() + DOCKERFILE


def test_build_context_holds_only_the_requirements():
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns == ["*", "!requirements.txt", "!constraints.txt"]


@pytest.mark.parametrize("service", [*AIRFLOW_SERVICES, "airflow-init"])
def test_airflow_settings(service):
    env = environment(service)
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert env["AIRFLOW_CONN_MOVIELENS_HISTORY"].endswith("@postgres:5432/airflow")
    assert env["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "true"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["PYTHONPATH"] == "/opt/airflow/include"
    assert env["MOVIELENS_STORAGE_ROOT"].startswith("${MOVIELENS_STORAGE_ROOT:-")


@pytest.mark.parametrize("service", [*AIRFLOW_SERVICES, "airflow-init"])
def test_project_folders_are_mounted_read_only(service):
    volumes = SERVICES[service]["volumes"]
    for folder in ("dags", "plugins", "include", "jobs"):
        assert f"./{folder}:/opt/airflow/{folder}:ro" in volumes


@pytest.mark.parametrize("service", [*AIRFLOW_SERVICES, "airflow-init"])
def test_settings_and_credentials_come_from_the_env_file(service):
    assert SERVICES[service]["env_file"] == [{"path": ".env", "required": True}]


def test_env_file_is_git_ignored():
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO).returncode == 0
    assert subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=REPO).returncode == 1


@pytest.mark.parametrize("service, probe", [
    ("postgres", "pg_isready"),
    ("airflow-apiserver", "http://localhost:8080/api/v2/monitor/health"),
    ("airflow-scheduler", "http://localhost:8974/health"),
    ("airflow-dag-processor", "airflow jobs check --job-type DagProcessorJob"),
    ("airflow-triggerer", "airflow jobs check --job-type TriggererJob"),
])
def test_every_long_running_service_has_a_healthcheck(service, probe):
    healthcheck = SERVICES[service]["healthcheck"]
    assert probe in " ".join(healthcheck["test"])
    assert {"interval", "retries"} <= set(healthcheck)


def test_scheduler_serves_its_health_check():
    assert environment("airflow-scheduler")["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


@pytest.mark.parametrize("service", AIRFLOW_SERVICES)
def test_airflow_components_wait_for_a_healthy_database_and_the_init(service):
    assert SERVICES[service]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "airflow-init": {"condition": "service_completed_successfully"},
    }


def test_airflow_init_migrates_the_database():
    assert environment("airflow-init")["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "exec /entrypoint airflow version" in SERVICES["airflow-init"]["command"][-1]


def test_only_the_api_server_publishes_a_port_and_only_on_localhost():
    published = {service: spec["ports"] for service, spec in SERVICES.items() if "ports" in spec}
    assert published == {"airflow-apiserver": ["127.0.0.1:${AIRFLOW_PORT:-8080}:8080"]}


def test_named_volumes_keep_the_database_logs_config_and_data():
    assert set(COMPOSE["volumes"]) == {
        "postgres-db-volume", "airflow-config", "airflow-logs", "movielens-data"}
    assert "postgres-db-volume:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"]


def test_secret_settings_are_only_interpolated_from_the_env_file():
    for path, text in strings(COMPOSE):
        name = str(path[-1])
        # A *_FILE setting names where a secret is kept, not the secret.
        is_secret = SECRET_NAME.search(name) and not name.endswith("_FILE")
        if len(path) >= 2 and path[-2] == "environment" and is_secret:
            assert ONLY_INTERPOLATION.match(text), (path, text)


def test_passwords_in_connection_uris_are_interpolated():
    for path, text in strings(COMPOSE):
        for password in re.findall(r"://[^:/@\s]+:([^@\s]*)@", text):
            assert ONLY_INTERPOLATION.match(password), (path, text)


def test_postgres_password_is_required_from_the_env_file():
    assert environment("postgres")["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_no_aws_credentials_in_the_compose_file():
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}", text)
    for service in SERVICES:
        assert not {name for name in environment(service) if name.startswith(("AWS_", "AIRFLOW_CONN_AWS"))}


def test_env_example_names_every_interpolated_variable():
    named = set(re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", ENV_EXAMPLE, re.M))
    names = {match["name"] for _, text in strings(COMPOSE) for match in interpolated(text)}
    assert names <= named, names - named


def test_env_example_holds_no_secret_value():
    for name, value in re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE, re.M):
        if SECRET_NAME.search(name):
            assert value == "", name
