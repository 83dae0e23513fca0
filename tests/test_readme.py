"""The README's two set-up commands are exactly what CI runs."""

import re

from conftest import REPO


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_setup_commands_are_the_ci_commands():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = _bash_blocks(setup)
    assert len(commands) == 2, "the README has exactly two set-up commands"
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci, f"CI does not run the README command: {command}"
    assert "pytest" in commands[1] and "sr-export run" in commands[0]


def test_main_job_needs_nothing_beside_the_repository():
    setup = (REPO / "README.md").read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    main_job = _bash_blocks(setup)[0]
    assert "../shared" not in main_job and "--weights" not in main_job  # the shipped default


def test_ci_runs_the_commands_in_a_new_virtual_environment():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    first = _bash_blocks(readme.split("## Set up", 1)[1])[0]
    assert ci.index('rm -rf "$venv"') < ci.index("-m venv") < ci.index("activate") < ci.index(first)
    assert "pip freeze" in ci
