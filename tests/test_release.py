"""The release path: the version in one place, the changelog, and the release workflow (which runs
only on GitHub; here its rules are read from the file and its version check is run by bash)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import gac_coding

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def _version_file() -> str:
    text = (ROOT / "src" / "gac_coding" / "_version.py").read_text()
    found = re.fullmatch(r'__version__ = "(\d+\.\d+\.\d+(?:[a-z0-9.]*)?)"\n', text)
    assert found, text
    return found.group(1)


def test_the_version_lives_in_one_place() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    project = text.split("[project]\n", 1)[1].split("\n[", 1)[0]  # up to the next table
    assert 'dynamic = ["version"]' in project and not re.search(r"^version\s*=", project, flags=re.M)
    hatch = text.split("[tool.hatch.version]\n", 1)[1].split("\n[", 1)[0]
    assert hatch.strip() == 'path = "src/gac_coding/_version.py"'
    assert gac_coding.__version__ == _version_file()


def test_the_changelog_has_a_section_for_the_version() -> None:
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert headings and headings[0] == gac_coding.__version__


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_the_workflow_publishes_tags_only_after_the_packaging_matrix() -> None:
    flow = _workflow()
    assert flow["on"] == {"push": {"tags": ["v*"]}}
    assert flow["permissions"] == {"contents": "read"}
    jobs = flow["jobs"]
    assert set(jobs) == {"build", "packaging", "publish"}
    # only the publishing job may ask for an identity token; it uploads what the build job built
    tokens = [name for name, job in jobs.items() if "id-token" in (job.get("permissions") or {})]
    assert tokens == ["publish"] and jobs["publish"]["permissions"] == {"id-token": "write"}
    assert set(jobs["publish"]["needs"]) == {"build", "packaging"} and jobs["packaging"]["needs"] == "build"
    uses = [step.get("uses", "") for step in jobs["publish"]["steps"]]
    assert uses[-1] == "pypa/gh-action-pypi-publish@release/v1"
    assert not any(
        "with" in step for step in jobs["publish"]["steps"] if "pypi-publish" in step.get("uses", "")
    )
    assert "password" not in WORKFLOW.read_text() and "secrets." not in WORKFLOW.read_text()
    runs = " ".join(step.get("run", "") for step in jobs["packaging"]["steps"])
    assert "make packaging" in runs
    build = " ".join(step.get("run", "") for step in jobs["build"]["steps"])
    assert "python -m build" in build


def _version_check_script() -> str:
    steps = _workflow()["jobs"]["build"]["steps"]
    (script,) = [s["run"] for s in steps if s.get("env", {}).get("TAG") == "${{ github.ref_name }}"]
    return script


@pytest.mark.parametrize(
    "tag, changelog, ok",
    [("v{v}", True, True), ("v9.9.9", True, False), ("{v}", True, False), ("v{v}", False, False)],
)
def test_the_workflow_refuses_a_tag_that_is_not_the_version(tmp_path: Path, tag, changelog, ok) -> None:
    version = gac_coding.__version__
    (tmp_path / "src" / "gac_coding").mkdir(parents=True)
    shutil.copy(ROOT / "src" / "gac_coding" / "_version.py", tmp_path / "src" / "gac_coding")
    text = (ROOT / "CHANGELOG.md").read_text()
    if not changelog:
        text = text.replace(f"## [{version}]", "## [Unreleased]")
    (tmp_path / "CHANGELOG.md").write_text(text)
    env = {"TAG": tag.format(v=version), "PATH": "/usr/bin:/bin"}
    result = subprocess.run(["bash", "-e", "-c", _version_check_script()], cwd=tmp_path, env=env,
                            capture_output=True, text=True)  # fmt: skip
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    if not ok:
        assert "::error::" in result.stdout
