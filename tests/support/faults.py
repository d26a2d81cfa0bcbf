"""The fault harness, shared by tests/faults and bench/faults.py: a workload of
real processes (an SDK worker appending numbered lines, SDK followers), the
faults (killing processes, a private PostgreSQL to restart, a proxy that drops
connections, a disk that fills), and the checks of every promise afterwards."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from tasktrail.client import TaskClient
from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_pb2, writer_service_pb2, writer_service_pb2_grpc
from tests.support.stack import free_port


def create_task(target: str, token: str, entity: str = "faults") -> str:
    with grpc.insecure_channel(target) as plain:
        writer = writer_service_pb2_grpc.TaskWriterServiceStub(grpc.intercept_channel(plain, WithToken(token)))
        request = writer_service_pb2.CreateTaskRequest(
            scope=task_pb2.SCOPE_DATABASE, entity_id=entity, type="node_backup", request_id=str(uuid.uuid4())
        )
        for _ in range(100):  # the service may still be settling after a start
            try:
                return writer.CreateTask(request, timeout=5).task.task_id
            except grpc.RpcError:
                time.sleep(0.2)
    raise TimeoutError("no task could be created")


@dataclass
class Workload:
    """One task: a worker appending `count` numbered lines, and followers of it."""

    target: str
    token: str
    task_id: str
    count: int
    work_dir: Path
    appender: subprocess.Popen[str]
    followers: list[subprocess.Popen[bytes]]
    outs: list[Path]
    started: float = field(default_factory=time.monotonic)

    def acked(self) -> int:
        """The lines the worker has been told are stored (so far)."""
        text = (self.work_dir / "appender.log").read_text()
        found = [int(line.split()[1]) for line in text.splitlines() if line.startswith("acked ")]
        return max(found, default=0)

    def stop(self) -> None:
        processes: list[subprocess.Popen[str] | subprocess.Popen[bytes]] = [self.appender, *self.followers]
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def start_workload(
    target: str,
    token: str,
    work_dir: Path,
    *,
    count: int = 2000,
    followers: int = 5,
    batch: int = 50,
    pause: float = 0.02,
    follow_target: str | None = None,
) -> Workload:
    work_dir.mkdir(parents=True, exist_ok=True)
    task_id = create_task(target, token)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    outs = [work_dir / f"follower-{i}.txt" for i in range(followers)]
    following = []
    for i, out in enumerate(outs):
        with open(work_dir / f"follower-{i}.err", "wb") as err:
            argv = [sys.executable, "-m", "tests.support.workers.follower", follow_target or target, token, task_id]
            following.append(subprocess.Popen([*argv, str(out)], env=env, stdout=subprocess.DEVNULL, stderr=err))
    with open(work_dir / "appender.log", "w") as log:
        appender = subprocess.Popen(
            [
                *(sys.executable, "-m", "tests.support.workers.appender", target, token, task_id, str(count)),
                *("--batch", str(batch), "--pause", str(pause)),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return Workload(target, token, task_id, count, work_dir, appender, following, outs)


@dataclass
class Report:
    """What a fault did to the promises: every acknowledged entry stored once, in
    order; every follower saw every entry once, in order; the task ended as its
    worker said."""

    acknowledged: int
    stored: int
    duplicated: int
    out_of_order: int
    follower_gaps: int
    follower_repeats: int
    followers_ended: int
    followers: int
    worker: str
    status: str
    seconds: float

    @property
    def clean(self) -> bool:
        return (
            self.duplicated == 0
            and self.out_of_order == 0
            and self.follower_gaps == 0
            and self.follower_repeats == 0
            and self.stored >= self.acknowledged
            and self.followers_ended == self.followers
        )

    def line(self) -> str:
        return (
            f"acknowledged {self.acknowledged} stored {self.stored} duplicated {self.duplicated} "
            f"out of order {self.out_of_order}; followers {self.followers_ended}/{self.followers} ended, "
            f"gaps {self.follower_gaps} repeats {self.follower_repeats}; worker {self.worker}; task {self.status}"
        )


def finish(workload: Workload, timeout: float = 120.0) -> Report:
    """Wait for the worker and the followers, then check every promise."""
    deadline = time.monotonic() + timeout
    try:
        workload.appender.wait(max(1.0, deadline - time.monotonic()))
        for process in workload.followers:
            process.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pass
    workload.stop()
    log = (workload.work_dir / "appender.log").read_text().splitlines()
    worker = "done" if "done" in log else next((line for line in log if line.startswith("error")), "unfinished")
    with TaskClient(workload.target, workload.token) as client:
        stored = [e.message for e in client.log(workload.task_id)]
        status = task_pb2.TaskStatus.Name(client.get(workload.task_id).status)
    lines = [m for m in stored if m.startswith("line-")]
    numbers = [int(m[5:]) for m in lines]
    gaps = repeats = ended = 0
    for out in workload.outs:
        got = out.read_text().splitlines() if out.exists() else []
        seen = [line for line in got if line.startswith("line-")]
        ended += bool(got) and got[-1].startswith("END ")
        repeats += len(seen) - len(set(seen)) + sum(1 for a, b in itertools.pairwise(seen) if b <= a)
        gaps += len(set(lines) - set(seen))
    return Report(
        acknowledged=(workload.count if worker == "done" else workload.acked()),
        stored=len(set(numbers)),
        duplicated=len(numbers) - len(set(numbers)),
        out_of_order=sum(1 for a, b in itertools.pairwise(numbers) if b <= a),
        follower_gaps=gaps,
        follower_repeats=repeats,
        followers_ended=ended,
        followers=len(workload.outs),
        worker=worker,
        status=status,
        seconds=time.monotonic() - workload.started,
    )


# -- faults ----------------------------------------------------------------------------


def children(pid: int) -> dict[int, str]:
    """The processes `pid` started, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\x00", b" ").decode()
        except OSError:
            continue
        if parent == pid:
            found[int(entry.name)] = cmdline
    return found


def kill_one(up_pid: int, kind: str) -> int:
    """SIGKILL one child of `tasktrail up`: a random server process, or Envoy."""
    if kind == "server":
        picked = [pid for pid, cmd in children(up_pid).items() if " -m tasktrail serve " in cmd]
    else:
        picked = [pid for pid, cmd in children(up_pid).items() if cmd.split()[0].endswith("/envoy")]
    victim = random.choice(picked)
    os.kill(victim, signal.SIGKILL)
    return victim


@contextlib.contextmanager
def chaos_proxy(target: int, *, every: float = 0.5, share: float = 0.2, seconds: float = 120.0) -> Iterator[int]:
    """A proxy in front of `target` that resets a share of its connections now and then; its port."""
    port = free_port()
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.proxy",
            str(port),
            str(target),
            "--every",
            str(every),
            "--share",
            str(share),
            "--seconds",
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proxy.stdout is not None
    assert proxy.stdout.readline().strip() == "listening"
    try:
        yield port
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(10)
        proxy.stdout.close()


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (the machine's is shared), to stop and start."""

    data: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *argv: str) -> None:
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "30", *argv]
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", options, "-l", str(self.data / "server.log"), "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A cluster in a directory of its own, owned by the postgres user (PostgreSQL
    refuses to run as root, and the tests' own directories are root's only)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    assert versions, "PostgreSQL's binaries are not installed"
    directory = Path(tempfile.mkdtemp(prefix="tasktrail-pg-"))
    data = directory / "pgdata"
    data.mkdir()
    shutil.chown(directory, "postgres")
    shutil.chown(data, "postgres")
    try:
        initdb = [str(versions[-1] / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run(["runuser", "-u", "postgres", "--", *initdb], check=True, capture_output=True, timeout=120)
        cluster = PrivatePostgres(data, free_port(), versions[-1])
        cluster.start()
        try:
            yield cluster
        finally:
            with contextlib.suppress(subprocess.SubprocessError):
                cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def small_disk(directory: Path, megabytes: int) -> Iterator[Path]:
    """A filesystem of `megabytes` (tmpfs), mounted at `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)
