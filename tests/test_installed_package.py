"""What a non-editable install carries (issue 25): the `vqa` package alone, copied to a
folder outside the source tree with its package data as pyproject.toml lists it. The
hand-written question sets and the distillation demo come with it; the shipped rules and
models do not, and a command needing them says so in one line."""
import fnmatch
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def install_like_a_wheel(dest: Path) -> Path:
    """Copy vqa/'s .py files and the package-data globs of pyproject.toml (what a wheel holds)."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vqa"]
    src = ROOT / "vqa"
    for f in src.rglob("*"):
        rel = f.relative_to(src).as_posix()
        if f.is_file() and "__pycache__" not in rel and (f.suffix == ".py" or any(fnmatch.fnmatch(rel, g) for g in globs)):
            (dest / "vqa" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest / "vqa" / rel)
    return dest


def run_vqa(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "vqa", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_package_data_covers_every_data_file():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vqa"]
    tracked = subprocess.run(["git", "ls-files", "vqa"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    data = [f.removeprefix("vqa/") for f in tracked if not f.endswith(".py")]
    assert data, "no data files found under vqa/"
    missing = [f for f in data if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


def test_installed_package_reads_its_data_and_names_what_it_lacks(tmp_path):
    site = install_like_a_wheel(tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    probe = subprocess.run(
        [sys.executable, "-c", "import vqa, vqa.honest as h; from vqa.distill.run import DEMO_DIR; "
         "print(vqa.__file__); print(h.DATA); print((DEMO_DIR / 'transcript.jsonl').is_file())"],
        cwd=work, env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    where, data, demo = probe.stdout.split()
    assert where.startswith(str(site)) and Path(data).is_relative_to(site) and demo == "True"
    assert (Path(data) / "out_of_domain.json").is_file() and (Path(data) / "human_questions.json").is_file()
    # the rules (not package data) are missing: one line that says why
    r = run_vqa(site, work, "answer", "--scene", str(ROOT / "data" / "samples" / "sample_scene.json"),
                "--program", "count(filter_shape[cube](scene()))")
    assert r.returncode == 2 and "pip install -e ." in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_vqa(site, work, "answer", "--image", str(ROOT / "data" / "samples" / "sample.png"),
                "--question", "How many cubes are there?")
    assert r.returncode == 2 and "no shipped checkpoint" in r.stderr and "pip install -e ." in r.stderr, r.stderr
