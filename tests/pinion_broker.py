"""One `pinion serve` process for a test: a free loopback port, a temporary
data directory, stderr captured to a file, and a bounded, certain stop.

The tests never build the broker: they run the binary named by
`PINION_BIN` (default `target/debug/pinion` under the repository root),
which scripts/test.sh builds first.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0
# A broker that dies before it is ready is started again this many times:
# glommio executors started right after others were torn down can fail with
# a misleading "kernel too old" panic (see DESIGN.md), and a free port can
# be taken by someone else between our probe and the broker's bind.
START_ATTEMPTS_MAX = 3

FAILED_START_MARK = "=== start attempt failed, retrying"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def binary_path() -> Path:
    path = Path(os.environ.get("PINION_BIN", REPO_ROOT / "target" / "debug" / "pinion"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now (bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _on_tmpfs(path: str) -> bool:
    """O_DIRECT does not work on tmpfs, so data directories must avoid it."""
    best, fstype = "", ""
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) >= 3 and path.startswith(fields[1]) and len(fields[1]) > len(best):
                    best, fstype = fields[1], fields[2]
    except OSError:
        return False
    return fstype == "tmpfs"


def make_data_dir(prefix: str = "pinion-test-") -> Path:
    base = os.environ.get("PINION_TEST_TMPDIR")
    if base is None:
        base = tempfile.gettempdir()
        if _on_tmpfs(os.path.realpath(base)):
            base = str(REPO_ROOT / "target" / "pytest-data")
    os.makedirs(base, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def _api_versions_roundtrip(port: int, timeout: float) -> bool:
    """True once the broker answers an ApiVersions v0 request."""
    request = struct.pack(">hhih", 18, 0, 1, 5) + b"ready"
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(struct.pack(">i", len(request)) + request)
            head = b""
            while len(head) < 8:
                chunk = conn.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
            return struct.unpack(">i", head[4:8])[0] == 1
    except OSError:
        return False


class BrokerStartError(RuntimeError):
    pass


class Broker:
    """A `pinion serve` process. Every start gets a new free port; the data
    directory stays the same, so a stop and start is a restart."""

    def __init__(self, data_dir: Path, log_path: Path, args=(), name: str = "pinion"):
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.args = list(args)
        self.name = name
        self.process = None
        self.port = None
        self.metrics_port = None
        self.returncodes = []
        # Set when the test (or teardown) sent the signal that ended the
        # process; an exit without it is a crash.
        self.exit_expected = False

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def command(self, port: int):
        return [
            str(binary_path()),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"{HOST}:{port}",
            *self.args,
        ]

    def start(self, metrics: bool = False) -> "Broker":
        assert self.process is None or self.process.poll() is not None, "broker already running"
        binary = binary_path()
        if not binary.exists():
            raise BrokerStartError(f"{binary} does not exist: build it (cargo build -p pinion-server) or set PINION_BIN")
        env = dict(os.environ, NO_COLOR="1")
        env.setdefault("RUST_LOG", "info")
        failures = []
        self.exit_expected = False
        for attempt in range(START_ATTEMPTS_MAX):
            port = free_port()
            command = self.command(port)
            if metrics:
                self.metrics_port = free_port()
                command += ["--metrics-addr", f"{HOST}:{self.metrics_port}"]
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== {self.name} start attempt {attempt + 1}: {' '.join(command)}\n".encode())
                log.flush()
                self.process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.data_dir.parent)
                )
            self.port = port
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                if _api_versions_roundtrip(port, timeout=1.0):
                    return self
                time.sleep(0.05)
            if self.process.poll() is None:
                self._terminate()
                raise BrokerStartError(f"{self.name} did not answer on {self.bootstrap} within {READY_TIMEOUT_S:.0f} s\n{self.log_tail()}")
            failures.append(f"attempt {attempt + 1}: exited with status {self.process.returncode}")
            self.returncodes.append(self.process.returncode)
            with open(self.log_path, "ab") as log:
                log.write(f"{FAILED_START_MARK} (status {self.process.returncode})\n".encode())
            time.sleep(0.5 * (attempt + 1))
        raise BrokerStartError(f"{self.name} failed to start: {'; '.join(failures)}\n{self.log_tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _terminate(self) -> int:
        self.exit_expected = True
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, sig=signal.SIGTERM, timeout: float = STOP_TIMEOUT_S):
        """Sends `sig` (SIGTERM by default), waits, SIGKILLs after `timeout`.
        Returns the exit status (negative: killed by that signal), or None if
        the process had already exited by itself before the signal."""
        if self.process is None:
            return None
        if self.process.poll() is not None:
            self.returncodes.append(self.process.returncode)
            return None
        self.exit_expected = True
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=STOP_TIMEOUT_S)
            with open(self.log_path, "ab") as log:
                log.write(f"\n=== {self.name} ignored signal {sig} for {timeout} s: killed\n".encode())
        self.returncodes.append(code)
        return code

    def kill(self):
        return self.stop(signal.SIGKILL, timeout=STOP_TIMEOUT_S)

    def log_text(self) -> str:
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_text().splitlines()
        return f"--- last {min(lines, len(text))} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])

    def panics(self):
        """Panic lines of the log, except those of start attempts that
        failed and were retried (the known executor start-up flake)."""
        found, section = [], []
        for line in self.log_text().splitlines():
            if line.startswith("=== "):
                if not line.startswith(FAILED_START_MARK):
                    found += section
                section = []
            elif "panicked" in line:
                section.append(line)
        return found + section

    def remove_data(self):
        shutil.rmtree(self.data_dir, ignore_errors=True)
