"""Off-site targets for restic on the local Docker engine: a REST server (rclone) and an sftp
server (openssh), built by tests/testbed/build-images.sh. Usable from any test suite.

Each server is a container named `tm-it-<name>` on the default bridge network, reached at its
container IP, with its data in a named volume of the same name (so it survives kill + start).
The IP may change when a container is started again: read `address`/`url()` after `start()`.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REST_SERVER_IMAGE = "torrust-maint-test/rest-server:latest"
SFTP_SERVER_IMAGE = "torrust-maint-test/sftp-server:latest"
CONTAINER_PREFIX = "tm-it-"
TEST_LABEL = "org.torrust-maint.test=offsite-server"
REST_PORT = 8000
SFTP_PORT = 22
SFTP_USER = "backup"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the docker CLI and capture its output; raise with its stderr when `check` fails."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}): "
                           f"{done.stderr.strip()}")
    return done


class _Server:
    """A container with its data in a named volume; subclasses say how to run and probe it."""

    image = ""
    port = 0
    data_dir = ""

    def __init__(self, name: str, size_limit_mb: int | None = None):
        self.name = CONTAINER_PREFIX + name
        self.size_limit_mb = size_limit_mb
        self._created = False
        self._address: str | None = None

    def _run_args(self) -> list[str]:
        """Options of `docker run` particular to this server (environment, mounts)."""
        return []

    def _probe(self, address: str) -> bool:
        """True once the service answers at `address`."""
        raise NotImplementedError

    def _data_mount(self) -> list[str]:
        """A tmpfs of the size limit (a remote that fills up), else the named volume."""
        if self.size_limit_mb is not None:
            return ["--tmpfs", f"{self.data_dir}:rw,size={self.size_limit_mb}m"]
        return ["--volume", f"{self.name}:{self.data_dir}"]

    def start(self, timeout: float = 30) -> None:
        """Create and run the container, or start it again after `kill()`; wait until ready."""
        if not self._created:
            self._remove_container()
            docker("run", "--detach", "--name", self.name, "--label", TEST_LABEL,
                   *self._data_mount(), *self._run_args(), self.image)
            self._created = True
        elif not self.running():
            docker("start", self.name)
        self._address = None
        self.wait_ready(timeout)

    def restart(self, timeout: float = 30) -> None:
        """Start the container again on the same data (lost if it is a tmpfs)."""
        self.start(timeout)

    def kill(self) -> None:
        """SIGKILL the server, e.g. mid-upload; its data stays for a later `start()`."""
        docker("kill", self.name)
        self._address = None

    def _remove_container(self) -> None:
        """Remove the container and its data volume (also a stale one of an earlier run)."""
        docker("rm", "--force", "--volumes", self.name, check=False)
        docker("volume", "rm", "--force", self.name, check=False)
        self._created = False
        self._address = None

    def remove(self) -> None:
        """Remove the container and its data volume; nothing left is fine."""
        self._remove_container()

    def running(self) -> bool:
        """True while the container runs."""
        done = docker("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return done.stdout.strip() == "true"

    @property
    def address(self) -> str:
        """The container's IP address on the default bridge network."""
        if self._address is None:
            done = docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", self.name)
            networks = json.loads(done.stdout) or {}
            addresses = [net["IPAddress"] for net in networks.values() if net.get("IPAddress")]
            if not addresses:
                raise RuntimeError(f"{self.name} has no IP address (is it running?)")
            self._address = addresses[0]
        return self._address

    def logs(self) -> str:
        """The container's output so far, for error messages."""
        done = docker("logs", "--tail", "50", self.name, check=False)
        return (done.stdout + done.stderr).strip()

    def wait_ready(self, timeout: float = 30) -> None:
        """Poll the service until it answers; raise with the container's logs on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{self.name} is not running:\n{self.logs()}")
            if self._probe(self.address):
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name} did not answer on {self.address}:{self.port} "
                           f"within {timeout:.0f} s:\n{self.logs()}")

    def bytes_stored(self) -> int:
        """Bytes under the data directory (`du -sb` inside the running container)."""
        done = docker("exec", self.name, "du", "-sb", self.data_dir)
        return int(done.stdout.split()[0])

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.remove()


class RestServer(_Server):
    """A restic REST server (`rclone serve restic`) with HTTP basic auth on port 8000."""

    image = REST_SERVER_IMAGE
    port = REST_PORT
    data_dir = "/data"

    def __init__(self, name: str, user: str = "restic",
                 password: str = "rest-secret",  # noqa: S107 - a throwaway test server
                 size_limit_mb: int | None = None, append_only: bool = False):
        super().__init__(name, size_limit_mb)
        self.user = user
        self.password = password
        self.append_only = append_only

    def _run_args(self) -> list[str]:
        return ["--env", f"REST_USER={self.user}", "--env", f"REST_PASSWORD={self.password}",
                "--env", f"REST_APPEND_ONLY={int(self.append_only)}"]

    def _probe(self, address: str) -> bool:
        """Any HTTP answer (401 without credentials) means the server is up."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://{address}:{self.port}/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def url(self, repo: str = "repo", user: str | None = None,
            password: str | None = None) -> str:
        """A restic repository URL with credentials, e.g. rest:http://U:P@IP:8000/repo/."""
        quote = urllib.parse.quote
        credentials = (f"{quote(self.user if user is None else user, safe='')}:"
                       f"{quote(self.password if password is None else password, safe='')}")
        return f"rest:http://{credentials}@{self.address}:{self.port}/{repo.strip('/')}/"


class SftpServer(_Server):
    """An sftp server (openssh) for restic, user `backup` with a fresh ed25519 key."""

    image = SFTP_SERVER_IMAGE
    port = SFTP_PORT
    data_dir = "/srv/restic"

    def __init__(self, name: str, size_limit_mb: int | None = None):
        super().__init__(name, size_limit_mb)
        self.key_dir: Path | None = None

    @property
    def key_path(self) -> Path:
        """The private key, generated on first use (ssh-keygen) in a private temp dir."""
        if self.key_dir is None:
            self.key_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-ssh-"))
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name,
                            "-f", str(self.key_dir / "id_ed25519")],
                           check=True, capture_output=True, text=True)
        return self.key_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """This server's own known_hosts file, next to the key."""
        return self.key_path.parent / "known_hosts"

    def _run_args(self) -> list[str]:
        public_key = self.key_path.with_suffix(".pub").read_text().strip()
        return ["--env", f"AUTHORIZED_KEY={public_key}"]

    def _probe(self, address: str) -> bool:
        """sshd is up once it sends its SSH banner."""
        try:
            with socket.create_connection((address, self.port), timeout=2) as conn:
                return conn.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    def start(self, timeout: float = 30) -> None:
        """As for any server; a new container has new host keys, so forget the old ones."""
        if not self._created and self.key_dir is not None:
            self.known_hosts.unlink(missing_ok=True)
        super().start(timeout)

    def remove(self) -> None:
        """Remove the container, its volume and the key pair."""
        super().remove()
        if self.key_dir is not None:
            shutil.rmtree(self.key_dir, ignore_errors=True)
            self.key_dir = None

    def repository(self, path: str = "/srv/restic/repo") -> str:
        """A restic repository string, e.g. sftp:backup@IP:/srv/restic/repo."""
        return f"sftp:{SFTP_USER}@{self.address}:{path}"

    def ssh_command(self) -> str:
        """The ssh command restic runs for the sftp backend (host keys accepted on first use)."""
        for path in (self.key_path, self.known_hosts):
            if any(char.isspace() for char in str(path)):
                raise ValueError(f"restic splits sftp.command on spaces: {path}")
        return " ".join([
            "ssh", "-F", "/dev/null", "-i", str(self.key_path), "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
            "-p", str(self.port), f"{SFTP_USER}@{self.address}", "-s", "sftp"])

    def restic_options(self) -> list[str]:
        """restic arguments selecting this server's ssh command: ["-o", "sftp.command=..."]."""
        return ["-o", f"sftp.command={self.ssh_command()}"]


class TcpProxy:
    """A TCP relay on 127.0.0.1 in front of a server. `stop()` resets every connection and
    closes the port: to the client, the server died on a host that still answers (refused
    at once), not one that vanished (where each retry waits for a connect timeout)."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        """Reset every relayed connection (SO_LINGER 0) and stop listening."""
        self.stopped.set()
        self.listener.close()
        with self.lock:
            for end in self.sockets:
                try:
                    end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
                    end.close()
                except OSError:
                    pass
            self.sockets.clear()
