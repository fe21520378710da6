"""A benchmark contender in its own process: the parent writes one command a line, the child
(the same script run with `--worker SPEC`) answers one line each. Shared by the speed benchmarks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile


class Worker:
    def __init__(self, script: str, spec: dict, env: dict | None = None):
        self.log = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ if env is None else env, **spec.get("env", {}))
        self.proc = subprocess.Popen([sys.executable, script, "--worker", json.dumps(spec)], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"benchmark worker died:\n{self.log.read()[-3000:]}")
        return line.strip()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
