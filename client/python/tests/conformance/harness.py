"""A cluster of `vss-runtime` processes on loopback, for the conformance
runner. Every process is started here and killed here, by its own PID;
all of them are killed when the cluster stops (and at interpreter exit,
should a test run be interrupted)."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml

from vss.v1 import cluster_pb2
from vss.v1 import vss_pb2 as pb
from vss.v1 import vss_pb2_grpc

# Env var naming the runtime binary; CI sets it to the release musl build.
BIN_VAR = "VSS_RUNTIME_BIN"
# The one way to turn the process tests off (they then show as skipped).
SKIP_VAR = "VSS_CONFORMANCE_SKIP"

_next_port = 0
_live: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A loopback port for one listener. Binding port 0 and releasing it is
    not enough: the kernel may hand the same port to an outgoing connection
    before the instance binds it. So each test process walks its own
    stretch (by PID) of the ports below Linux's ephemeral range (32768 up),
    never giving one out twice, and skips ports something else holds (the
    same scheme as runtime/tests/process)."""
    global _next_port
    first, span = 10_000, 20_000
    start = (os.getpid() % 20) * 1_000 + 500
    for _ in range(span):
        port = first + (start + _next_port) % span
        _next_port += 1
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise OSError(f"no free loopback port in {first}..{first + span}")


def runtime_binary() -> str:
    """The binary, or a failure (or a loud skip, when opted out)."""
    if os.environ.get(SKIP_VAR) == "1":
        pytest.skip(f"tests against real processes turned off by {SKIP_VAR}=1 (not run, not passed)")
    binary = os.environ.get(BIN_VAR)
    if not binary:
        pytest.fail(
            f"{BIN_VAR} is not set: the tests against real processes (conformance, "
            f"integration) need a vss-runtime binary (e.g. "
            f"{BIN_VAR}=target/x86_64-unknown-linux-musl/release/vss-runtime); "
            f"{SKIP_VAR}=1 turns them off",
            pytrace=False,
        )
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"{BIN_VAR}={binary} is not an executable file", pytrace=False)
    return binary


def _kill_all_at_exit() -> None:
    for proc in list(_live.values()):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


atexit.register(_kill_all_at_exit)


@dataclass
class Node:
    id: str
    grpc: int
    mesh: int
    http: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc}"


@dataclass
class ProcessCluster:
    """`instances` runtime processes sharing one slot config."""

    binary: str
    config_yaml: str
    instances: int = 3
    extra: list[str] = field(default_factory=list)
    # How the harness itself calls Status: a token (admin) and TLS, for
    # clusters that require them.
    status_token: str | None = None
    status_tls: grpc.ChannelCredentials | None = None

    def __post_init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="vss-py-conformance-"))
        self.config = self.dir / "slots.yaml"
        self.config.write_text(self.config_yaml)
        self.nodes = [
            Node(f"vss-{i}", free_port(), free_port(), free_port(), self.dir / f"vss-{i}.log")
            for i in range(self.instances)
        ]
        self.peers = ",".join(f"{n.id}=127.0.0.1:{n.mesh}" for n in self.nodes)
        slots = yaml.safe_load(self.config_yaml).get("slots") or []
        self.configured_slots = len(slots)

    @property
    def endpoints(self) -> list[str]:
        return [n.endpoint for n in self.nodes]

    def args(self, i: int) -> list[str]:
        n = self.nodes[i]
        return [
            self.binary,
            "--config",
            str(self.config),
            "--id",
            n.id,
            "--listen",
            f"127.0.0.1:{n.grpc}",
            "--mesh-listen",
            f"127.0.0.1:{n.mesh}",
            "--http-listen",
            f"127.0.0.1:{n.http}",
            "--peers",
            self.peers,
            *self.extra,
        ]

    def start(self) -> ProcessCluster:
        for i in range(len(self.nodes)):
            self.spawn(i)
        return self

    def spawn(self, i: int) -> None:
        """(Re)starts instance `i` with the same arguments and ports."""
        n = self.nodes[i]
        # Appended to, so a restarted instance's log keeps what the dead one wrote.
        with open(n.log, "ab") as log:
            n.proc = subprocess.Popen(
                self.args(i),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info")},
            )
        _live[n.proc.pid] = n.proc

    def kill(self, i: int) -> None:
        """SIGKILLs instance `i` (the process this cluster started)."""
        n = self.nodes[i]
        if n.proc is None:
            return
        if n.proc.poll() is None:
            os.kill(n.proc.pid, signal.SIGKILL)
            n.proc.wait()
        _live.pop(n.proc.pid, None)
        n.proc = None

    def stop(self) -> None:
        """Kills every instance; removes the config and logs unless
        VSS_KEEP_LOGS=1 (then says where they are)."""
        for i in range(len(self.nodes)):
            self.kill(i)
        if os.environ.get("VSS_KEEP_LOGS") == "1":
            print(f"instance logs kept in {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def index_of(self, instance_id: str) -> int:
        for i, n in enumerate(self.nodes):
            if n.id == instance_id:
                return i
        raise KeyError(f"{instance_id!r} is not an instance of this cluster")

    def status(self, i: int, timeout: float = 2.0) -> pb.StatusReply | None:
        target = self.nodes[i].endpoint
        metadata = [("authorization", f"Bearer {self.status_token}")] if self.status_token else []
        try:
            with (
                grpc.secure_channel(target, self.status_tls)
                if self.status_tls is not None
                else grpc.insecure_channel(target)
            ) as channel:
                stub = vss_pb2_grpc.VssStub(channel)  # type: ignore[no-untyped-call]
                reply: pb.StatusReply = stub.Status(
                    pb.StatusRequest(), timeout=timeout, metadata=metadata
                )
                return reply
        except grpc.RpcError:
            return None

    def table(self, i: int) -> cluster_pb2.RoutingTable | None:
        s = self.status(i)
        return s.routing if s is not None and s.HasField("routing") else None

    def settled(self, within: float) -> cluster_pb2.RoutingTable:
        """Waits until every instance holds the same table with every
        instance a member and a route for every configured slot."""
        deadline = time.monotonic() + within
        tables: list[cluster_pb2.RoutingTable | None] = []
        while True:
            tables = [self.table(i) for i in range(len(self.nodes))]
            first = tables[0]
            if (
                first is not None
                and all(t == first for t in tables)
                and first.epoch >= 1
                and len(first.members) == len(self.nodes)
                and len(first.routes) == self.configured_slots
            ):
                return first
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no settled routing table after {within:g} s: {tables}\n" + self.logs_tail()
                )
            time.sleep(0.05)

    def metric(self, i: int, name: str) -> float | None:
        """The value of the first sample of metric `name` on instance `i`'s
        /metrics, or None if it cannot be read."""
        url = f"http://127.0.0.1:{self.nodes[i].http}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            # `name value` or `name{labels} value`; not `name_other ...`.
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
                return float(line.rsplit(" ", 1)[1])
        return None

    def logs_tail(self, lines: int = 30) -> str:
        out = []
        for n in self.nodes:
            try:
                text = n.log.read_text(errors="replace").splitlines()
            except OSError:
                text = []
            out.append(f"--- {n.id} (last {min(lines, len(text))} lines of {n.log}):")
            out.extend(text[-lines:])
        return "\n".join(out)
