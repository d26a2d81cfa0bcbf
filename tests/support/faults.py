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
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from tasktrail.client import TaskClient
from tasktrail.edge.sample import WithToken
from tasktrail.v1 import task_pb2, task_service_pb2, task_service_pb2_grpc, writer_service_pb2, writer_service_pb2_grpc
from tests.support.stack import Stack, free_port, same_ports, start_stack, stop_stack


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


# Follows one follower process holds (each process: one channel, as an application's).
FOLLOWS_A_PROCESS = 10


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
    for first in range(0, followers, FOLLOWS_A_PROCESS):
        group = [str(out) for out in outs[first : first + FOLLOWS_A_PROCESS]]
        with open(work_dir / f"followers-{first}.err", "wb") as err:
            argv = [sys.executable, "-m", "tests.support.workers.follower", follow_target or target, token, task_id]
            following.append(subprocess.Popen([*argv, *group], env=env, stdout=subprocess.DEVNULL, stderr=err))
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
    """SIGKILL one child of `tasktrail up` that is serving: a random server
    process (its port open), or Envoy (up for a second). Killing a process
    before it serves would test the supervisor's crash-loop backoff instead."""
    deadline = time.monotonic() + 30
    while True:
        if kind == "server":
            picked = [
                pid
                for pid, cmd in children(up_pid).items()
                if " -m tasktrail serve " in cmd and _listening(int(cmd.split("--port ")[1].split()[0]))
            ]
        else:
            picked = [pid for pid, cmd in children(up_pid).items() if cmd.split()[0].endswith("/envoy")]
            picked = [pid for pid in picked if _age(pid) > 1.0]
        if picked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    victim = random.choice(picked)
    os.kill(victim, signal.SIGKILL)
    return victim


def _age(pid: int) -> float:
    """Seconds since process `pid` started."""
    ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def chaos_proxy(target: int, *, every: float = 0.5, share: float = 0.2, seconds: float = 120.0) -> Iterator[Chaos]:
    """A proxy in front of `target` that resets a share of its connections now and then."""
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
    chaos = Chaos(port)
    try:
        yield chaos
    finally:
        proxy.send_signal(signal.SIGTERM)
        proxy.wait(10)
        chaos.resets = proxy.stdout.read().split().count("reset")
        proxy.stdout.close()


@dataclass
class Chaos:
    port: int
    # Connections it reset, once it has stopped.
    resets: int = 0


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


class Probe:
    """A reader while a fault happens: a REST read (port 3000) and a gRPC GetTask
    every `every` seconds, each answer noted with its time and code."""

    def __init__(self, rest: str, target: str, token: str, task_id: str, every: float = 0.05) -> None:
        self.rest, self.target, self.token, self.task_id, self.every = rest, target, token, task_id, every
        self.answers: list[tuple[float, str]] = []
        # Each REST 503's body and Retry-After header: the dialect's own shape, or not.
        self.unavailable: list[tuple[str, str | None]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._rest), threading.Thread(target=self._grpc)]

    def __enter__(self) -> Probe:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _rest(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self._stop.wait(self.every):
                try:
                    reply = http.get(f"{self.rest}/v1/databases/faults/tasks?limit=1")
                    code = str(reply.status_code)
                    if reply.status_code == 503:
                        self.unavailable.append((reply.text, reply.headers.get("retry-after")))
                except httpx.HTTPError as error:
                    code = type(error).__name__
                self.answers.append((time.monotonic(), f"REST {code}"))

    def _grpc(self) -> None:
        with grpc.insecure_channel(self.target) as plain:
            reader = task_service_pb2_grpc.TaskServiceStub(grpc.intercept_channel(plain, WithToken(self.token)))
            while not self._stop.wait(self.every):
                try:
                    reader.GetTask(task_service_pb2.GetTaskRequest(task_id=self.task_id), timeout=5)
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                self.answers.append((time.monotonic(), f"gRPC {code}"))

    def codes(self) -> Counter[str]:
        return Counter(code for _, code in self.answers)

    def errors(self) -> Counter[str]:
        return Counter({code: n for code, n in self.codes().items() if code not in ("REST 200", "gRPC OK")})

    def longest_outage(self) -> float:
        """The longest time one surface answered nothing but errors (seconds)."""
        longest = 0.0
        for surface in ("REST", "gRPC"):
            failing_since: float | None = None
            for at, code in sorted(a for a in self.answers if a[1].startswith(surface)):
                if code in ("REST 200", "gRPC OK"):
                    if failing_since is not None:
                        longest = max(longest, at - failing_since)
                    failing_since = None
                elif failing_since is None:
                    failing_since = at
        return longest


# -- scenarios: a fault against a workload, and what it did ---------------------------------


@dataclass
class Outcome:
    """One scenario's figures: the promises (report), what readers saw meanwhile
    (errors by code; the longest a surface answered only errors), and how long
    the service took to serve again once the fault ended (recovery)."""

    name: str
    report: Report
    errors: Counter[str]
    probes: int
    outage: float
    recovery: float | None = None
    notes: dict[str, object] = field(default_factory=dict)
    # The REST 503s readers got: (body, Retry-After).
    unavailable: list[tuple[str, str | None]] = field(default_factory=list)

    def lines(self) -> list[str]:
        errors = ", ".join(f"{code} {n}" for code, n in sorted(self.errors.items())) or "none"
        recovery = "" if self.recovery is None else f"; serving again {self.recovery:.2f} s after the fault ended"
        notes = "".join(f"; {k} {v}" for k, v in self.notes.items())
        return [
            f"{self.name}: {self.report.line()}",
            f"  readers: {self.probes} probes, errors {errors}; longest outage {self.outage:.2f} s{recovery}{notes}",
        ]


def _outcome(name: str, work: Workload, probe: Probe, **extra: object) -> Outcome:
    report = finish(work)
    recovery = extra.pop("recovery", None)
    assert recovery is None or isinstance(recovery, float)
    return Outcome(name, report, probe.errors(), len(probe.answers), probe.longest_outage(), recovery, dict(extra))


def kills(
    stack: Stack, work_dir: Path, kind: str, *, count: int, followers: int, every: float, pause: float = 0.02
) -> Outcome:
    """SIGKILL a random server process (or Envoy) every `every` seconds while a
    worker appends `count` lines (50 a batch, `pause` between) and `followers`
    follow them."""
    work = start_workload(stack.grpc_target, stack.token, work_dir, count=count, followers=followers, pause=pause)
    killed = 0
    with Probe(stack.rest, stack.grpc_target, stack.token, work.task_id) as probe:
        # `every` seconds of service between kills (a kill before the service is back
        # would test the supervisor's crash-loop backoff, not the promises).
        while _sleep_while(work.appender, every) and time.monotonic() - work.started < 300:
            kill_one(stack.proc.pid, kind)
            killed += 1
            _serving_after(stack.rest, time.monotonic())
        outcome = _outcome(f"kill {kind}", work, probe, kills=killed)
    outcome.recovery = outcome.outage
    return outcome


def _sleep_while(process: subprocess.Popen[str], seconds: float) -> bool:
    """Sleep `seconds` unless `process` ends first; whether it still runs."""
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def dropped_connections(stack: Stack, work_dir: Path, *, count: int, followers: int, share: float) -> Outcome:
    """The worker and followers reach gRPC through a proxy that resets `share`
    of its connections every 0.3 s."""
    grpc_port = int(stack.grpc_target.rsplit(":", 1)[1])
    with chaos_proxy(grpc_port, every=0.3, share=share, seconds=300) as chaos:
        through = f"127.0.0.1:{chaos.port}"
        work = start_workload(through, stack.token, work_dir, count=count, followers=followers)
        with Probe(stack.rest, through, stack.token, work.task_id) as probe:
            outcome = _outcome("dropped connections", work, probe)
    outcome.notes["connections reset"] = chaos.resets
    outcome.notes["follower resumes"] = sum(resumes(out) for out in work.outs)
    return outcome


def resumes(out: Path) -> int:
    """How often a follower resumed, from its END line."""
    last = out.read_text().splitlines()[-1:] if out.exists() else []
    return int(last[0].rsplit("=", 1)[1]) if last and last[0].startswith("END ") else 0


def sigterm_restart(stack: Stack, work_dir: Path, *, count: int, followers: int) -> tuple[Outcome, Stack]:
    """SIGTERM `up` under load: in flight, a WaitTask and the follows; then a new
    `up` on the same store and ports. Returns the new stack too (to stop)."""
    ports = same_ports(stack)
    work = start_workload(stack.grpc_target, stack.token, work_dir, count=count, followers=followers, pause=0.05)
    in_flight: list[str] = []
    with Probe(stack.rest, stack.grpc_target, stack.token, work.task_id) as probe:
        time.sleep(1.0)
        waiter = threading.Thread(target=_wait_task, args=(stack, work.task_id, in_flight))
        waiter.start()
        time.sleep(0.3)
        stopped = time.monotonic()
        stack.proc.terminate()
        code = stack.proc.wait(60)
        took = time.monotonic() - stopped
        time.sleep(0.5)
        listening = [p for p in _ports(stack) if _listening(p)]  # nothing restarted after the stop
        waiter.join(30)
        again = start_stack(stack.data_dir, "--no-sample", *ports, database_url=stack.database_url, owns=True)
        served = time.monotonic()
        outcome = _outcome(
            "SIGTERM and restart",
            work,
            probe,
            recovery=_serving_after(stack.rest, served) + served - stopped,
            **{"exit code": code, "stop took": f"{took:.2f} s", "in flight": in_flight, "listening": listening},
        )
    return outcome, again


def _ports(stack: Stack) -> list[int]:
    return [*stack.server_ports, int(stack.grpc_target.rsplit(":", 1)[1]), int(stack.rest.rsplit(":", 1)[1])]


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _serving_after(rest: str, since: float) -> float:
    """Seconds from `since` until a REST read answers 200."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{rest}/v1/tasks?limit=1", timeout=2).status_code == 200:
                return time.monotonic() - since
        time.sleep(0.02)
    raise TimeoutError(f"{rest} did not serve again")


def _wait_task(stack: Stack, task_id: str, codes: list[str]) -> None:
    with grpc.insecure_channel(stack.grpc_target) as plain:
        reader = task_service_pb2_grpc.TaskServiceStub(grpc.intercept_channel(plain, WithToken(stack.token)))
        request = task_service_pb2.WaitTaskRequest(task_id=task_id)
        request.timeout.FromMilliseconds(1500)
        try:
            reader.WaitTask(request, timeout=30)
            codes.append("OK")
        except grpc.RpcError as error:
            codes.append(error.code().name)


def postgres_restart(work_dir: Path, *, count: int, followers: int, replicas: int, down: float) -> Outcome:
    """PostgreSQL stopped for `down` seconds under load (a private cluster),
    then started again; the service heals without a restart."""
    with private_postgres() as cluster:
        stack = start_stack(work_dir / "stack", "--no-sample", database_url=cluster.url, owns=False, replicas=replicas)
        try:
            work = start_workload(stack.grpc_target, stack.token, work_dir / "work", count=count, followers=followers)
            with Probe(stack.rest, stack.grpc_target, stack.token, work.task_id) as probe:
                time.sleep(1.5)
                cluster.stop()
                time.sleep(down)
                cluster.start()
                up = time.monotonic()
                recovery = _serving_after(stack.rest, up)
                time.sleep(1.0)
            outcome = _outcome("PostgreSQL restart", work, probe, recovery=recovery)
            latencies = delivery_latencies(stack)
            outcome.notes["follower wake after restart"] = f"{max(latencies) * 1000:.0f} ms (LISTEN)"
            outcome.notes["_latencies"] = latencies
            return outcome
        finally:
            stop_stack(stack)


def delivery_latencies(stack: Stack, count: int = 5) -> list[float]:
    """Seconds from an append's answer to a follower's getting it, for a few entries."""
    task_id = create_task(stack.grpc_target, stack.token, "listen")
    with grpc.insecure_channel(stack.grpc_target) as plain:
        channel = grpc.intercept_channel(plain, WithToken(stack.token))
        writer = writer_service_pb2_grpc.TaskWriterServiceStub(channel)
        call = task_service_pb2_grpc.TaskServiceStub(channel).FollowTaskLog(
            task_service_pb2.FollowTaskLogRequest(task_id=task_id), timeout=30
        )
        follow = iter(call)
        next(follow)  # the first heartbeat: the stream is open
        took = []
        for i in range(count):
            time.sleep(0.2)
            entry = task_pb2.LogEntry(message=f"ping {i}")
            writer.AppendLogEntries(writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=[entry]))
            sent = time.monotonic()
            for frame in follow:
                if frame.WhichOneof("frame") == "entries":
                    took.append(time.monotonic() - sent)
                    break
        call.cancel()
    return took


@dataclass
class FullDisk:
    acknowledged: int
    refused: str
    refused_details: str
    rest: tuple[int, str]
    stored: int
    integrity: str
    after_freeing: int
    stored_after: int

    def lines(self) -> list[str]:
        return [
            f"full disk: {self.acknowledged} entries acknowledged, then {self.refused} ({self.refused_details!r}); "
            f"REST cancel {self.rest[0]} {self.rest[1]}; stored {self.stored}; integrity_check {self.integrity}; "
            f"after freeing space {self.after_freeing} more acknowledged, stored {self.stored_after}"
        ]


def full_disk(work_dir: Path, megabytes: int = 12) -> FullDisk:
    """SQLite on a `megabytes` tmpfs: appends until the disk is full, then space freed."""
    with small_disk(work_dir / "disk", megabytes) as disk:
        (disk / "filler").write_bytes(bytes(2 << 20))  # room to free once the disk is full
        url = f"sqlite:///{disk / 'tasktrail.db'}"
        stack = start_stack(work_dir / "stack", "--no-sample", database_url=url, owns=False)
        try:
            task_id = create_task(stack.grpc_target, stack.token)
            with grpc.insecure_channel(stack.grpc_target) as plain:
                writer = writer_service_pb2_grpc.TaskWriterServiceStub(
                    grpc.intercept_channel(plain, WithToken(stack.token))
                )
                batch = [task_pb2.LogEntry(message="x" * 60_000) for _ in range(20)]
                acknowledged, refused, details = 0, "never refused", ""
                for _ in range(megabytes * 4):  # 1.2 MB a batch: the disk fills within
                    try:
                        request = writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=batch)
                        acknowledged += len(writer.AppendLogEntries(request, timeout=30).entry_ids)
                    except grpc.RpcError as error:
                        refused, details = error.code().name, error.details() or ""
                        break
                cancel = httpx.get(f"{stack.rest}/v1/databases/faults/tasks/{task_id}/cancel", timeout=10)
                rest = (cancel.status_code, str(cancel.json().get("name")))
                stored = _stored(stack, task_id)
                with sqlite3.connect(disk / "tasktrail.db") as raw:
                    integrity = str(raw.execute("PRAGMA integrity_check").fetchone()[0])
                (disk / "filler").unlink()  # the store's own file only grows: a filler made room
                request = writer_service_pb2.AppendLogEntriesRequest(task_id=task_id, entries=batch[:2])
                after = len(writer.AppendLogEntries(request, timeout=30).entry_ids)
                return FullDisk(acknowledged, refused, details, rest, stored, integrity, after, _stored(stack, task_id))
        finally:
            stop_stack(stack)


def _stored(stack: Stack, task_id: str) -> int:
    with TaskClient(stack.grpc_target, stack.token) as client:
        return sum(1 for _ in client.log(task_id))
