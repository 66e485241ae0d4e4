"""A real Spark standalone cluster and a real S3-API server for the tests, started and stopped here.

- ``s3``: moto's threaded S3 server on 127.0.0.1 (tests/s3server.py), the standard AWS_*
  variables set for this process and its subprocesses, bucket ``curate-test`` created.
- ``cluster``: a master and two one-core workers launched with the pyspark package's own
  ``bin/spark-class``. The workers run as the unprivileged user ``curate-worker``: they read
  the code and the Python environment but not the driver's 0700 temporary directories, so
  nothing can lean on a shared local disk. Pipelines run on it as ``curate run`` subprocesses
  (one SparkContext per process; tests/conftest.py's ``spark`` is local[2]).

Needs root (to create and switch to the worker user) and Java; skipped otherwise.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import s3server
from s3server import die_with_parent

REPO = Path(__file__).resolve().parents[2]
WORKER_USER = "curate-worker"
WORKERS = 2
REGISTER_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def s3() -> str:
    """The endpoint URL of the S3-API server (AWS_* variables already point at it)."""
    return s3server.start()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_worker(*cmd: str, env: dict[str, str] | None = None) -> list[str]:
    """``cmd`` run as the worker user, with ``env`` set explicitly (runuser resets HOME/USER)."""
    pairs = [f"{k}={v}" for k, v in (env or {}).items()]
    return ["runuser", "-u", WORKER_USER, "--", "env", *pairs, *cmd]


def worker_can(*cmd: str) -> bool:
    return subprocess.run(as_worker(*cmd), capture_output=True, timeout=120).returncode == 0


def ensure_worker_user() -> None:
    try:
        pwd.getpwnam(WORKER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", WORKER_USER],
                       check=True, capture_output=True)


def blocking_dirs(path: Path) -> list[Path]:
    """Ancestors of ``path`` that other users cannot traverse (no o+x)."""
    return [p for p in reversed(path.resolve().parents) if not p.stat().st_mode & stat.S_IXOTH]


@pytest.fixture(scope="session")
def worker_python() -> str:
    """The interpreter the executors run, checked to be usable by the worker user.

    The venv may point at a base interpreter under a 0700 home (pyenv in /root): then its
    ancestors get search permission (o+x: traverse, not list) for the session, restored after.
    """
    if os.geteuid() != 0:
        pytest.skip("the cluster fixture needs root (it creates and switches to an unprivileged worker user)")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime for the Spark master and workers")
    ensure_worker_user()
    python = sys.executable
    probe = (python, "-c", "import curate, pyspark, s3fs")
    changed: list[tuple[Path, int]] = []
    for d in dict.fromkeys(blocking_dirs(Path(python)) + blocking_dirs(Path(sys.base_prefix) / "lib")):
        mode = d.stat().st_mode
        changed.append((d, mode))
        d.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    if not worker_can(*probe):
        pytest.fail(f"user {WORKER_USER} cannot run {python} -c 'import curate, pyspark, s3fs' (search "
                    f"permission granted on {[str(c) for c, _ in changed] or 'nothing'}): make the code and "
                    "the Python environment world-readable")
    yield python
    for d, mode in reversed(changed):
        d.chmod(stat.S_IMODE(mode))


@pytest.fixture(scope="session")
def private_tmp(tmp_path_factory) -> Path:
    """A directory of the driver's user with mode 0700; the worker user provably cannot list it."""
    path = tmp_path_factory.mktemp("driver-private")
    path.chmod(0o700)
    return path


def assert_worker_cannot_read(path: Path) -> None:
    assert not worker_can("ls", str(path)), f"{WORKER_USER} can list {path}: the isolation test is void"
    assert not worker_can("touch", str(path / "probe")), f"{WORKER_USER} can write into {path}"


@pytest.fixture(scope="session")
def check_isolated():
    """The check that the worker user can neither list nor write a directory."""
    return assert_worker_cannot_read


@dataclass
class Cluster:
    master_url: str
    webui: str
    python: str
    logs: Path
    numba_cache: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def executor_conf(self) -> list[str]:
        """``--conf`` pairs every driver on this cluster needs: executors' Python and S3 settings."""
        pairs = {"spark.executorEnv.PYSPARK_PYTHON": self.python, "spark.pyspark.python": self.python,
                 "spark.executor.memory": "1g", "spark.executor.cores": "1", "spark.cores.max": str(WORKERS),
                 "spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2",
                 "spark.driver.host": "127.0.0.1"}
        for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
                    "AWS_DEFAULT_REGION"):
            if key in os.environ:
                pairs[f"spark.executorEnv.{key}"] = os.environ[key]
        return [item for k, v in pairs.items() for item in ("--conf", f"{k}={v}")]

    def status(self) -> dict:
        with urllib.request.urlopen(f"{self.webui}/json/", timeout=5) as resp:
            return json.load(resp)

    def alive_workers(self) -> int:
        try:
            return sum(w.get("state") == "ALIVE" for w in self.status().get("workers", []))
        except OSError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), so the executors a worker forked are stopped too."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_tree(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the process, its group and its descendants (by pid), then SIGKILL what is left."""
    pids = [proc.pid, *_descendants(proc.pid)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        if not any(Path(f"/proc/{pid}").exists() for pid in pids[1:]):
            return
        time.sleep(1)


def _spark_home() -> Path:
    import pyspark

    home = Path(pyspark.__file__).parent
    if not (home / "bin" / "spark-class").is_file():
        pytest.fail(f"{home}/bin/spark-class not found: the pyspark package has no launcher")
    return home


@pytest.fixture(scope="session")
def cluster(worker_python, private_tmp, s3, tmp_path_factory):
    """A standalone master and two one-core, 1 GiB workers (user ``curate-worker``) on 127.0.0.1."""
    assert_worker_cannot_read(private_tmp)
    spark_home = _spark_home()
    logs = tmp_path_factory.mktemp("cluster-logs")
    worker_root = Path(tempfile.mkdtemp(prefix="curate-worker-"))
    worker = pwd.getpwnam(WORKER_USER)
    base_env = {"SPARK_HOME": str(spark_home), "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1",
                "PATH": os.environ["PATH"],
                **{k: os.environ[k] for k in ("JAVA_HOME", "JAVA_TOOL_OPTIONS") if k in os.environ}}
    port, webui_port = free_port(), free_port()
    master_url, webui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui_port}"
    numba_cache = worker_root / "numba"  # one cache for both workers: the kernels compile once
    c = Cluster(master_url, webui, worker_python, logs, numba_cache)
    spark_class = str(spark_home / "bin" / "spark-class")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a killed test run still stops the cluster
    try:
        with open(logs / "master.log", "wb") as out:
            c.procs.append(subprocess.Popen(
                die_with_parent([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                 "--port", str(port), "--webui-port", str(webui_port)]),
                env={**base_env, "HOME": str(logs)}, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        numba_cache.mkdir()
        os.chown(numba_cache, worker.pw_uid, worker.pw_gid)
        for i in range(WORKERS):
            home = worker_root / f"w{i}"
            for sub in ("work", "local", "home"):
                (home / sub).mkdir(parents=True)
            for p in [worker_root, home, *home.iterdir()]:
                os.chown(p, worker.pw_uid, worker.pw_gid)
                p.chmod(0o700)
            env = {**base_env, "HOME": str(home / "home"), "SPARK_LOCAL_DIRS": str(home / "local"),
                   "NUMBA_CACHE_DIR": str(numba_cache),
                   "SPARK_WORKER_DIR": str(home / "work")}
            with open(logs / f"worker{i}.log", "wb") as out:
                c.procs.append(subprocess.Popen(
                    as_worker(spark_class, "org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1",
                              "--cores", "1", "--memory", "1g", "--work-dir", str(home / "work"),
                              "--webui-port", str(free_port()), env=env),
                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        _wait_for_workers(c)
        yield c
    finally:
        for proc in reversed(c.procs):
            stop_tree(proc)
        shutil.rmtree(worker_root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _wait_for_workers(c: Cluster) -> None:
    deadline = time.time() + REGISTER_TIMEOUT
    while time.time() < deadline:
        if c.alive_workers() >= WORKERS:
            return
        dead = [p.args for p in c.procs if p.poll() is not None]
        if dead:
            pytest.fail(f"a cluster process exited early: {dead}\n{c.log_tail()}")
        time.sleep(0.5)
    pytest.fail(f"{c.alive_workers()}/{WORKERS} Spark workers registered with {c.master_url} within "
                f"{REGISTER_TIMEOUT:.0f} s\n{c.log_tail()}")


@dataclass
class CurateRun:
    """A ``curate`` subprocess on the cluster; ``wait()`` returns (exit code, stderr)."""
    proc: subprocess.Popen
    stderr_path: Path

    def wait(self, timeout: float = 600) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_tree(self.proc)
            raise
        return code, self.stderr_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the driver and its JVM (the whole tree), as a lost machine would."""
        pids = [self.proc.pid, *_descendants(self.proc.pid)]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def seed_numba_cache(cache_dir: Path, owner: pwd.struct_passwd) -> None:
    """Copy the kernels numba compiled in this checkout (curate/**/__pycache__, written by the
    local reference runs) into the executors' cache, at the place numba looks for them there.

    The worker user cannot write the checkout's __pycache__, so numba gives it a cache of its
    own (``NUMBA_CACHE_DIR``), where each executor would compile every kernel again. An entry is
    keyed by its source file's mtime and size, so a copy is used only while the source is unchanged.
    """
    from numba.core.caching import UserProvidedCacheLocator

    for cached in sorted((REPO / "curate").glob("**/__pycache__/*.nb[ic]")):
        package = cached.parent.parent
        target = cache_dir / UserProvidedCacheLocator.get_suitable_cache_subpath(str(package / "any.py"))
        copy = target / cached.name
        if not copy.exists():  # what the executors compiled themselves stays theirs
            target.mkdir(exist_ok=True)
            shutil.copyfile(cached, copy)
            for path in (target, copy):
                os.chown(path, owner.pw_uid, owner.pw_gid)


@pytest.fixture(scope="session")
def curate_on_cluster(cluster, private_tmp):
    """Start ``curate <args> --master <cluster>`` as a subprocess with the executors' settings."""
    counter = iter(range(1_000_000))
    started: list[CurateRun] = []

    def start(*args: str, master: str | None = None) -> CurateRun:
        seed_numba_cache(cluster.numba_cache, pwd.getpwnam(WORKER_USER))
        log = private_tmp / f"curate-{next(counter)}.stderr"
        cmd = [sys.executable, "-m", "curate", *args, "--master", master or cluster.master_url,
               *cluster.executor_conf()]
        with open(log, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=private_tmp, stdout=subprocess.DEVNULL, stderr=err,
                                    env={**os.environ, "TMPDIR": str(private_tmp)}, start_new_session=True)
        started.append(CurateRun(proc, log))
        return started[-1]

    yield start
    for run in started:  # a failed or interrupted test leaves no driver behind
        if run.proc.poll() is None:
            stop_tree(run.proc)
