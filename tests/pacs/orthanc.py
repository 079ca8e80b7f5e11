"""A real Orthanc (Debian packages `orthanc` and `orthanc-dicomweb`) run by the tests.

Each instance is one process with its own JSON config, storage folder and free HTTP port, with
basic auth and the DICOMweb plugin. It can be killed and started again on the same storage,
which is how the fault tests make the PACS disappear mid-retrieve.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")
USER, PASSWORD = "reader", "orthanc-test-password"


def orthanc_binary() -> str:
    found = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if not found:
        raise RuntimeError("Orthanc is not installed: run `make system-deps` (apt-get install orthanc orthanc-dicomweb)")
    return found


def dicomweb_plugin() -> str:
    for folder in PLUGIN_DIRS:
        candidate = Path(folder) / "libOrthancDicomWeb.so"
        if candidate.exists():
            return str(candidate)
    raise RuntimeError("The Orthanc DICOMweb plugin is not installed: apt-get install orthanc-dicomweb")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = root / "storage"
        self.storage.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": f"seganypet-test-{self.port}",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "Plugins": [dicomweb_plugin()],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "HttpTimeout": 30,
        }))
        self.process: subprocess.Popen | None = None
        self.log = root / "orthanc.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self, timeout: float = 30.0) -> Orthanc:
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen([orthanc_binary(), str(self.config)], stdout=sink, stderr=sink,
                                            cwd=self.root)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(f"{self.url}/system", auth=(USER, PASSWORD), timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """Gone at once, as a crashed or unplugged PACS (no clean shutdown)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=20)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.process = None

    def restart(self) -> Orthanc:
        self.kill()
        return self.start()

    # --- its REST API, used to load and inspect test data -----------------------------------------

    def rest(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", auth=(USER, PASSWORD), timeout=60, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, paths) -> int:
        count = 0
        for path in paths:
            self.rest("POST", "/instances", data=Path(path).read_bytes(),
                      headers={"Content-Type": "application/dicom"})
            count += 1
        return count

    def instance_count(self) -> int:
        return int(self.rest("GET", "/statistics").json()["CountInstances"])
