"""A real TensorBoard server for tests: started in a subprocess on a free loopback port,
queried over HTTP, stopped by its pid.

    with TensorBoardServer(logdir) as tb:
        tb.wait_for(lambda: "run" in tb.json("/data/runs"))
        tb.json("/data/plugin/pytorch_profiler/runs")

Everything stays on 127.0.0.1; nothing needs the network.
"""
from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pandas as pd

PROFILER = "/data/plugin/pytorch_profiler"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TensorBoardServer:
    """``tensorboard --logdir LOGDIR --host 127.0.0.1 --port <free>`` in a subprocess."""

    def __init__(self, logdir: Path, *, reload_interval: float = 1, extra_args: tuple[str, ...] = (),
                 log_path: Path | None = None, start_timeout: float = 60):
        self.logdir = Path(logdir)
        self.reload_interval = reload_interval
        self.extra_args = extra_args
        self.log_path = Path(log_path) if log_path else self.logdir.parent / f"tensorboard-{os.getpid()}.log"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TensorBoardServer":
        for attempt in range(3):  # a free port can be taken between probing and binding
            self.port = free_port()
            self._log = open(self.log_path, "ab")
            cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(self.logdir), "--host", "127.0.0.1",
                   "--port", str(self.port), "--reload_interval", str(self.reload_interval), *self.extra_args]
            # its own session: the data server and the profiler plugin's loaders are its children
            self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, env={**os.environ, "no_proxy": "*"})
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with urllib.request.urlopen(self.url + "/data/environment", timeout=2) as r:
                        if r.status == 200:
                            return self
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    time.sleep(0.2)
            self.stop()
            if "Address already in use" not in self.log_tail():
                break
        raise RuntimeError(f"tensorboard did not start on {self.url}:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server this object started (by its pid), then anything left in its session."""
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=15)
        try:  # the process group of the session it led: its data server and plugin workers
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None
        try:
            self._log.close()
        except Exception:
            pass

    def __enter__(self) -> "TensorBoardServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------- queries --

    def get(self, path: str, params: dict | None = None, timeout: float = 30) -> tuple[bytes, dict]:
        """GET ``path``; returns (body, headers). A gzip ``Content-Encoding`` body is decompressed."""
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            headers = {k.lower(): v for k, v in r.headers.items()}
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        return body, headers

    def json(self, path: str, params: dict | None = None, **kw) -> Any:
        return json.loads(self.get(path, params, **kw)[0])

    def wait_for(self, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.5, what: str = "") -> Any:
        """Call ``probe`` until it returns something truthy (HTTP errors count as not yet)."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = probe()
                if last:
                    return last
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, KeyError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: last={last!r}\n"
                                     f"{self.log_tail()}")
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"tensorboard exited with {self.proc.returncode}:\n{self.log_tail()}")
            time.sleep(interval)

    def profiler_runs(self) -> list[str]:
        return self.json(PROFILER + "/runs")["runs"]


# ------------------------------------------------------------------ chromium --

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                  # offline for real: no name but loopback resolves, whatever the machine can reach
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost")


def find_chromium() -> str | None:
    import shutil

    env = os.environ.get("CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CHROMIUM_NAMES:
        p = shutil.which(name)
        if p:
            return p
    return None


# Text of a node, the shadow roots of every element included (TensorBoard's dashboards
# are Polymer/Angular components: their content is not in document.body.innerText).
DEEP_TEXT_JS = r"""
(() => {
  const out = [];
  const walk = (n) => {
    if (n.nodeType === Node.TEXT_NODE) { out.push(n.textContent); return; }
    if (n.nodeType === Node.ELEMENT_NODE && ['STYLE', 'SCRIPT', 'TEMPLATE'].includes(n.tagName)) return;
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.childNodes) walk(c);
  };
  walk(document);
  return out.join(' ').replace(/\s+/g, ' ');
})()
"""

# Every <img> in the document and in shadow roots: src, natural size, alt.
DEEP_IMAGES_JS = r"""
(() => {
  const out = [];
  const walk = (n) => {
    if (n.nodeType === Node.ELEMENT_NODE && n.tagName === 'IMG')
      out.push({src: n.currentSrc || n.src || '', w: n.naturalWidth, h: n.naturalHeight, complete: n.complete});
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.childNodes) walk(c);
  };
  walk(document);
  return out;
})()
"""


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``:
    commands on fd 3, replies on fd 4, NUL-separated JSON), so no websocket client is needed.

    Every request the page makes is recorded in :attr:`requests` (url, and the error if it failed).
    """

    def __init__(self, binary: str, user_data_dir: Path, *, width: int = 1400, height: int = 1000,
                 extra_flags: tuple[str, ...] = (), log_path: Path | None = None):
        import threading

        self.binary = binary
        self.width, self.height = width, height
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        log = open(log_path or Path(user_data_dir).parent / "chromium.log", "ab")
        Path(user_data_dir).mkdir(parents=True, exist_ok=True)
        args = [binary, *CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={user_data_dir}",
                f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank"]

        def fds() -> None:  # the child's fd 3 reads our commands, its fd 4 writes replies
            import fcntl

            a, b = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        # close_fds=False: fds 3 and 4 are made in the child after the fork; Python's own
        # descriptors are not inheritable, so nothing else leaks into chromium
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=fds, start_new_session=True, close_fds=False)
        log.close()
        os.close(cmd_r)
        os.close(res_w)
        self._id = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self.requests: dict[str, dict] = {}
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = None

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._res_r, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cv:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self._on_event(msg)
                    self._cv.notify_all()

    def _on_event(self, msg: dict) -> None:
        self.events.append(msg)
        p = msg.get("params", {})
        if msg.get("method") == "Network.requestWillBeSent":
            self.requests[p["requestId"]] = {"url": p["request"]["url"], "document": p.get("documentURL", "")}
        elif msg.get("method") == "Network.loadingFailed":
            self.requests.setdefault(p["requestId"], {"url": "?"})["error"] = p.get("errorText")

    def send(self, method: str, params: dict | None = None, *, session: bool = True, timeout: float = 30) -> dict:
        with self._cv:
            self._id += 1
            mid = self._id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cv:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"chromium: no reply to {method} (exit code {self.proc.poll()})")
                self._cv.wait(min(left, 0.5))
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise RuntimeError(f"chromium: {method}: {reply['error']}")
        return reply.get("result", {})

    def open(self, url: str) -> None:
        """Attach to the first page, record its network, and navigate to ``url``."""
        if self.session is None:
            targets = self.send("Target.getTargets", session=False)["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.send("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True},
                                     session=False)["sessionId"]
            self.send("Page.enable")
            self.send("Network.enable")
            self.send("Runtime.enable")
            self.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                             "deviceScaleFactor": 1, "mobile": False})
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"chromium: evaluate failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 30, interval: float = 0.25) -> Any:
        """Evaluate ``expression`` until it is truthy; returns its value (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"chromium: timed out after {timeout}s waiting for {expression[:200]!r}: {value!r}")

    def deep_text(self) -> str:
        return self.evaluate(DEEP_TEXT_JS) or ""

    def deep_images(self) -> list[dict]:
        return self.evaluate(DEEP_IMAGES_JS) or []

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        import base64

        params: dict = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000), "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def external_requests(self) -> list[dict]:
        """Requests that left the machine (anything but loopback, data: and about:)."""
        out = []
        for r in self.requests.values():
            u = urllib.parse.urlsplit(r["url"])
            if u.scheme in ("data", "about", "blob", "chrome", "devtools"):
                continue
            if u.hostname in ("127.0.0.1", "localhost", "::1"):
                continue
            out.append(r)
        return out

    def close(self) -> None:
        """Close the browser this object started (by its pid), then its process group."""
        try:
            if self.proc.poll() is None:
                self.send("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        for fd in (self._cmd_w, self._res_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------- synthetic runs --
# Contract-shaped summary / ops / modules (see the run pipeline) with known numbers,
# for checks of the writers that need no model run.

RUN_ID = "20261125T061500.123456Z-4242-ab12"


def png_bytes(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real (tiny, solid) PNG, without matplotlib."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def make_summary(**over) -> dict:
    s = {
        "schema_version": 1, "scenario": "tiny", "run_id": RUN_ID, "started_at": "2026-11-25T06:15:00.123456Z",
        "finished_at": "2026-11-25T06:15:04.000000Z", "tag": None, "device": "cpu", "device_name": "Test CPU",
        "dtype": "float32", "batch_size": 2, "threads": 2, "warmup": 2, "iters": 7, "params": 5354,
        "macs": 120832, "flops": 241664, "other_flops": 4096, "bytes": 60000,
        "latency_s": {"p50": 2.5e-4, "p90": 3.0e-4, "p99": 3.5e-4, "mean": 2.6e-4, "std": 1e-5, "min": 2.4e-4,
                      "max": 4e-4, "n": 7},
        "throughput_samples_per_s": 8000.0, "achieved_flop_per_s": 241664 / 2.5e-4, "peak_flop_per_s": 1.0e11,
        "peak_source": "derived", "utilization": 241664 / 2.5e-4 / 1.0e11, "mem_bandwidth_bytes_per_s": 2e10,
        "arithmetic_intensity": 4.1, "peak_memory_bytes": 123_456_789,
        "coverage": {"share_of_ops": 1.0, "share_of_time": 0.85}, "profiled": {"steps": 3, "time_per_forward_s": 3e-4},
        "trace_files": ["host_1.1.pt.trace.json"], "trace_bytes": 54321, "torch_version": "2.14.1",
        "git_commit": "abcdef123456", "config_key": "tiny|bs=2|float32|cpu|threads=2|tag=", "env_key": "x",
        "path": None,
    }
    s.update(over)
    return s


def make_ops() -> pd.DataFrame:
    return pd.DataFrame([
        {"name": "aten::convolution", "kind": "op", "calls": 1.0, "self_time_s": 1.5e-4, "flops": 221184.0,
         "bytes": 40000.0, "achieved_flop_per_s": 221184 / 1.5e-4, "utilization": 221184 / 1.5e-4 / 1e11},
        {"name": "aten::addmm", "kind": "op", "calls": 1.0, "self_time_s": 5e-5, "flops": 20480.0, "bytes": 20000.0,
         "achieved_flop_per_s": 20480 / 5e-5, "utilization": 20480 / 5e-5 / 1e11},
        {"name": "model_inference", "kind": "label", "calls": 1.0, "self_time_s": 2e-5, "flops": 0.0, "bytes": 0.0,
         "achieved_flop_per_s": float("nan"), "utilization": None},
    ])


def make_modules() -> pd.DataFrame:
    return pd.DataFrame([
        {"path": "", "type": "Sequential", "depth": 0, "params": 5354, "flops": 241664.0, "time_s": 2.4e-4,
         "achieved_flop_per_s": 241664 / 2.4e-4, "utilization": 0.01},
        {"path": "0", "type": "Conv2d", "depth": 1, "params": 224, "flops": 221184.0, "time_s": 1.6e-4,
         "achieved_flop_per_s": 221184 / 1.6e-4, "utilization": 0.0138},
        {"path": "4", "type": "Linear", "depth": 1, "params": 5130, "flops": 20480.0, "time_s": 6e-5,
         "achieved_flop_per_s": float("nan"), "utilization": float("nan")},
    ])


# ------------------------------------------------------------- real runs ----

_SHARED: dict[str, Any] = {}


class HarnessRuns:
    """Real ``harness.run_scenario`` runs of the tiny test scenario, written to one logdir:
    two runs of batch 2 (one config: its trend has steps 0 and 1) and one run of batch 4
    with a gzip trace. Built once per test process and shared by the modules that read it."""

    def __init__(self, base: Path):
        from conftest import TINY_SCENARIO
        import textwrap

        import harness
        from harness.pipeline.profiling import ProfileConfig

        self.base = base
        self.scenario = base / "tiny.py"
        self.scenario.write_text(textwrap.dedent(TINY_SCENARIO))
        self.logdir = base / "logs"
        kw = dict(logdir=self.logdir, warmup=1, iters=3)
        self.runs = [harness.run_scenario(self.scenario, **kw), harness.run_scenario(self.scenario, **kw),
                     harness.run_scenario(self.scenario, batch_size=4, profile_config=ProfileConfig(gzip=True), **kw)]

    def name(self, run) -> str:
        """The run's name in TensorBoard and in the profiler plugin: its path under the logdir."""
        return Path(run.path).relative_to(self.logdir).as_posix()

    def trace(self, run) -> Path:
        (t,) = [p for p in Path(run.path).iterdir() if ".pt.trace.json" in p.name]
        return t

    def trend_dirs(self) -> list[Path]:
        return sorted((self.logdir / "tiny" / "trends").iterdir())


def harness_runs(tmp_path_factory) -> HarnessRuns:
    if "runs" not in _SHARED:
        _SHARED["runs"] = HarnessRuns(tmp_path_factory.mktemp("harness_runs"))
    return _SHARED["runs"]
