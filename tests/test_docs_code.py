"""Every ```python and ```bash block of README.md and docs/ is kept true by this test.

- A python block runs (in a subprocess, in a scratch folder, on CPU at tiny sizes) unless the line
  right before it is `<!-- not run: REASON -->`; a block not run is still compiled and every
  `segadapter.NAME` it uses must exist.
- A bash block is never run: every `segadapter COMMAND ...` in it (also after `python -m` or
  `torchrun ... -m`) is parsed by the real argparse parser of COMMAND, `segadapter train CONFIG
  KEY=VALUE ...` with a shipped config is loaded and validated as training would, a repository
  script it names (benchmarks/*.py, *.sh, docs/*.sbatch) must exist and know every `--option`
  given to it, and `pip install ".[extra]"` must name extras pyproject.toml defines.

So a renamed option, config key, shipped config, script or function fails the suite. The checks
of the bash blocks take a few seconds; the python blocks that run take ~15 s each.
"""
from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = re.compile(r"<!--\s*not run:\s*(\S.*?)\s*-->")
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def doc_files() -> list[Path]:
    return [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.md"))


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = [ln[len(indent):] if ln.startswith(indent) else ln for ln in lines[i + 1:j]]
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marked = NOT_RUN.search(prev)
        if lang in ("python", "bash"):
            out.append(Block(path, start + 1, lang, "\n".join(body), marked.group(1) if marked else None))
        i = j + 1
    return out


ALL = [b for p in doc_files() for b in blocks_of(p)]
PYTHON = [b for b in ALL if b.lang == "python"]
BASH = [b for b in ALL if b.lang == "bash"]


def test_blocks_are_found():
    assert len(PYTHON) >= 10 and len(BASH) >= 30
    assert any(b.path.name == "README.md" and b.not_run is None for b in PYTHON)


# ------------------------------------------------------------------------------------- python
@pytest.mark.parametrize("block", [b for b in PYTHON if b.not_run is None], ids=lambda b: b.where)
def test_python_block_runs(block, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(block.code + "\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=_env())
    assert proc.returncode == 0, f"{block.where} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"


def _env():
    import os

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


@pytest.mark.parametrize("block", [b for b in PYTHON if b.not_run is not None], ids=lambda b: b.where)
def test_python_block_not_run_still_names_real_api(block):
    import segadapter

    tree = ast.parse(block.code, filename=block.where)  # a syntax error fails here
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "segadapter":
            assert hasattr(segadapter, node.attr), f"{block.where}: segadapter.{node.attr} does not exist"
    assert len(block.not_run) > 5, f"{block.where}: say why the block is not run"


# --------------------------------------------------------------------------------------- bash
def commands_of(code: str) -> list[list[str]]:
    """Shell words of every simple command (continuations joined, comments dropped, && / | / ;
    split); `[--opt X]` optional groups are unwrapped and `a|b|c` alternatives take the first."""
    text = re.sub(r"\\\n", " ", code)
    out = []
    for line in text.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = shlex.split(line, comments=True)
        cmd: list[str] = []
        for w in words + ["&&"]:
            if w in ("&&", "||", "|", ";"):
                if cmd:
                    out.append(cmd)
                cmd = []
                continue
            w = w.strip("[]") if (w.startswith("[") or w.endswith("]")) and not w.startswith("[[") else w
            if re.fullmatch(r"[\w-]+(\|[\w-]+)+", w):
                w = w.split("|")[0]
            if w:
                cmd.append(w)
    return out


def _segadapter_args(cmd: list[str]) -> list[str] | None:
    while cmd and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", cmd[0]):  # VAR=value prefixes
        cmd = cmd[1:]
    if cmd and cmd[0] == "segadapter":
        return cmd[1:]
    if "-m" in cmd and cmd.index("-m") + 1 < len(cmd) and cmd[cmd.index("-m") + 1] == "segadapter":
        return cmd[cmd.index("-m") + 2:]
    return None


def check_segadapter(args: list[str], where: str) -> None:
    from segadapter.cli.main import COMMANDS, build_parser

    assert args and args[0] in COMMANDS, f"{where}: unknown command {args[:1]}"
    parser = build_parser(args[0])
    try:
        ns = parser.parse_args(args)
    except SystemExit as e:
        raise AssertionError(f"{where}: `segadapter {' '.join(args)}` is refused by its parser") from e
    if args[0] == "train":
        from segadapter.cli.train import _parse_rest
        from segadapter.engine.config_loader import list_configs, load_config

        try:
            ns = _parse_rest(ns)
        except SystemExit as e:
            raise AssertionError(f"{where}: `segadapter {' '.join(args)}` is refused") from e
        if ns.config in list_configs():
            load_config(ns.config, ns.overrides)  # a renamed key or a bad value raises ConfigError
        else:
            assert ns.config is None or ns.config.isupper() or ns.config.endswith((".yaml", ".yml")) \
                or "/" in ns.config, f"{where}: {ns.config!r} is no shipped config"


def check_script(cmd: list[str], where: str) -> None:
    script = next((w for w in cmd if re.fullmatch(r"(benchmarks|docs|tests)/[\w./-]+\.(py|sh|sbatch)", w)), None)
    if script is None:
        return
    path = ROOT / script
    assert path.is_file(), f"{where}: {script} does not exist"
    source = path.read_text(encoding="utf-8")
    for w in cmd[cmd.index(script) + 1:]:
        opt = w.split("=", 1)[0]
        if re.fullmatch(r"--[a-z][\w-]*", opt):
            assert opt in source, f"{where}: {script} has no option {opt}"


def check_pip(cmd: list[str], where: str) -> None:
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for w in cmd:
        m = re.fullmatch(r"(?:\.|segadapter)\[([\w,-]+)\]", w)
        if m:
            for extra in m.group(1).split(","):
                assert extra in extras, f"{where}: pyproject.toml has no extra {extra!r}"


@pytest.mark.parametrize("block", BASH, ids=lambda b: b.where)
def test_bash_block_commands_are_real(block):
    for cmd in commands_of(block.code):
        args = _segadapter_args(cmd)
        if args is not None:
            check_segadapter(args, block.where)
        elif cmd[0] in ("pip", "pip3") or cmd[:3] == ["python", "-m", "pip"]:
            check_pip(cmd, block.where)
        else:
            check_script(cmd, block.where)


# ------------------------------------------------------------------ the checks can fail at all
def test_a_renamed_option_fails():
    with pytest.raises(AssertionError, match="refused"):
        check_segadapter(["predict", "RUN", "x.png", "--out", "p/", "--overlay-fmt", "jpg"], "t")
    with pytest.raises(Exception, match="no_such_key"):
        check_segadapter(["train", "synthetic", "train.no_such_key=1"], "t")
    with pytest.raises(AssertionError, match="no option"):
        check_script(["python", "benchmarks/int8.py", "--no-such-option"], "t")
    with pytest.raises(AssertionError, match="no extra"):
        check_pip(["pip", "install", "-e", ".[nosuchextra]"], "t")
    with pytest.raises(AssertionError, match="does not exist"):
        test_python_block_not_run_still_names_real_api(Block(ROOT, 1, "python", "segadapter.no_such()", "reason here"))
