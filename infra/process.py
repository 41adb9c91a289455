"""A service of the local stack as one plain OS process.

Each service has a pid file, a log file and a data dir under the state folder.
A pid file is trusted only while ``/proc/<pid>/cmdline`` still carries the
service's marker (its config path), so a recycled pid is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template

from kappa.exceptions import PortInUseError, ServiceStartError
from kappa.processes import running_pid
from kappa.settings import Settings

CONFIG_DIR = Path(__file__).resolve().parent / "config"


@dataclass(frozen=True)
class Port:
    """A TCP port a service binds, and the setting that moves it."""

    number: int
    setting: str


def render(template: str, target: Path, **values: object) -> Path:
    """Render ``infra/config/<template>`` with ``values`` into ``target``."""
    text = Template((CONFIG_DIR / template).read_text()).substitute(
        {k: str(v) for k, v in values.items()}
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return target


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' when missing)."""
    if not path.exists():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        data = fh.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])


class Service(ABC):
    """One managed process: prepare, start, health, stop."""

    name: str
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_s: float = 60.0
    # True when the process runs its work in children (e.g. a web server it spawns):
    # stop then signals the whole process group and leaves no child behind.
    signal_group: bool = False
    # True when the next service must start before this one can be healthy (the nodes
    # of a Kafka quorum): up() starts both, then waits for each.
    start_with_next: bool = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stack = settings.stack
        self._proc: subprocess.Popen[bytes] | None = None

    # --- what each service defines -------------------------------------------------
    @property
    @abstractmethod
    def managed(self) -> bool:
        """False when the user points kappa at an external instance."""

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """Where clients reach it."""

    @abstractmethod
    def ports(self) -> Sequence[Port]:
        """Ports this service binds when kappa runs it."""

    @abstractmethod
    def prepare(self) -> None:
        """Render config and initialise the data dir (idempotent)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The argv that runs the service in the foreground."""

    @abstractmethod
    def healthy(self) -> bool:
        """A real request to the service succeeds."""

    @abstractmethod
    def version(self) -> str | None:
        """The version the running service reports (None when unknown)."""

    def after_start(self) -> None:  # noqa: B027 - optional hook, most services need none
        """Bootstrap work once healthy (databases, roles...)."""

    def cwd(self) -> Path:
        return self.data_dir

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def run_as(self) -> str | None:
        """OS user to run as (None: the current user)."""
        return None

    # --- paths ------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.stack.data_dir / self.name

    @property
    def log_path(self) -> Path:
        return self.stack.logs_dir / f"{self.name}.log"

    @property
    def pid_path(self) -> Path:
        return self.stack.run_dir / f"{self.name}.pid"

    @property
    def marker(self) -> str:
        """A string only our process has in its command line."""
        return str(self.stack.state_dir)

    # --- lifecycle ------------------------------------------------------------------
    def pid(self) -> int | None:
        """The pid of our running process, or None."""
        return running_pid(self.pid_path, self.marker)

    def busy_ports(self) -> list[Port]:
        """Ports of this service that something else already holds."""
        return [p for p in self.ports() if not port_is_free(self.stack.host, p.number)]

    def check_ports(self) -> None:
        busy = self.busy_ports()
        if busy:
            port = busy[0]
            raise PortInUseError(
                f"{self.name}: port {port.number} on {self.stack.host} is already in use by "
                f"another process. Stop that process or choose another port with "
                f"{port.setting}=<port>."
            )

    def start(self) -> int:
        """Start the process detached from our session; return its pid."""
        for d in (self.stack.logs_dir, self.stack.run_dir, self.data_dir):
            d.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n==== kappa: starting {self.name} at {time.ctime()} ====\n".encode())
        log.flush()
        proc = subprocess.Popen(
            self.command(),
            cwd=self.cwd(),
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=self.run_as(),
        )
        log.close()
        self._proc = proc
        self.pid_path.write_text(f"{proc.pid}\n")
        return proc.pid

    def _exited(self) -> bool:
        if self._proc is not None:
            # Right after fork the child's cmdline is still ours: ask Popen, not /proc.
            return self._proc.poll() is not None
        return self.managed and self.pid() is None

    def wait_healthy(self, timeout_s: float | None = None) -> None:
        """Block until healthy; raise with the log's tail when it dies or times out."""
        deadline = time.monotonic() + (timeout_s or self.stack.health_timeout_s)
        while time.monotonic() < deadline:
            if self._exited():
                raise ServiceStartError(
                    f"{self.name} exited during start-up. Last lines of {self.log_path}:\n"
                    f"{tail(self.log_path)}"
                )
            if self.healthy():
                return
            time.sleep(0.5)
        raise ServiceStartError(
            f"{self.name} did not become healthy at {self.endpoint} within "
            f"{timeout_s or self.stack.health_timeout_s:.0f}s. Last lines of {self.log_path}:\n"
            f"{tail(self.log_path)}"
        )

    def stop(self) -> bool:
        """Stop our process gracefully (then forcibly); True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if self.signal_group else os.kill)(pid, self.stop_signal)
        deadline = time.monotonic() + self.stop_timeout_s
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.2)
        if self.pid() is not None or self.signal_group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.1)
        self.pid_path.unlink(missing_ok=True)
        return True


def java_major(java: str) -> int:
    """The major version of a Java executable (0 when it does not run)."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    except OSError:
        return 0
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else 0


def java_command(
    settings: Settings,
    heap: str,
    classpath: str,
    main: str,
    *args: str,
    extra_opts: Sequence[str] = (),
) -> list[str]:
    """A JVM argv sized for a small machine: capped heap, few GC and JIT threads."""
    return [
        settings.stack.java,
        "-Xms64m",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=50",
        "-XX:ParallelGCThreads=2",
        "-XX:ConcGCThreads=1",
        "-XX:CICompilerCount=2",
        "-Djava.awt.headless=true",
        *extra_opts,
        "-cp",
        classpath,
        main,
        *args,
    ]
