"""The repository itself: the README's two commands, CI running the same test command, nothing unshippable."""
import re
import subprocess

from conftest import REPO

README = (REPO / "README.md").read_text()


def fenced_commands(text):
    return [line for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)
            for line in block.splitlines() if line.strip()]


def test_readme_opens_with_exactly_two_set_up_commands():
    set_up = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert fenced_commands(set_up) == ["scripts/run_local.sh", "scripts/test.sh"]


def test_ci_runs_the_readmes_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "grep -m 1 -E '^scripts/test\\.sh( |$)' README.md" in ci
    assert "$test_command" in ci


def tracked_files():
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split()


def test_no_movielens_100k_or_1m_files_are_tracked():
    assert not [path for path in tracked_files() if re.search(r"(^|/)(u\.data|u\.item|ratings\.dat)$", path)]


def test_no_aws_credentials_are_tracked():
    pattern = re.compile(r"AKIA[0-9A-Z]{16}|aws_secret_access_key\s*[=:]\s*[A-Za-z0-9/+]{30,}", re.I)
    offenders = [path for path in tracked_files()
                 if (REPO / path).is_file() and pattern.search((REPO / path).read_text(errors="ignore"))]
    assert offenders == []
