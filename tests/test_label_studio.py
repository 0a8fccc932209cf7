"""``label_studio.json`` against a real Label Studio server (opt-in).

Label Studio is not a dependency of nfpf (its pinned packages clash with ours): install it in
its own virtual environment and point ``NFPF_LABEL_STUDIO`` at its ``label-studio``
executable (or put that on PATH). Without it this module is skipped, with that reason.

The test starts the server on 127.0.0.1 (a fresh data directory, a free port), creates a
project, adds the *Local files* source storage docs/select.md describes, imports the file
``nfpf-select`` wrote, and fetches every image through the URL of its task: all of them must
come back byte-identical, odd file names included. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

import pytest
from PIL import Image

from nfpf.app.select_images import select_images

EXECUTABLE = os.environ.get("NFPF_LABEL_STUDIO") or shutil.which("label-studio")
pytestmark = pytest.mark.skipif(
    not EXECUTABLE or not os.access(EXECUTABLE, os.X_OK),
    reason="Label Studio not found: install label-studio in its own virtual environment and "
           "set NFPF_LABEL_STUDIO to its label-studio executable")

STARTUP_SECONDS = 300  # first start: database migrations
REQUEST_SECONDS = 30
# odd names: spaces, '#', '%', '+', '&', non-ASCII, nested folders
NAMES = ["a b#1.png", "100%.png", "c+d&e.png", "ünïcode é.png", "plain.png", "x.y.z.png",
         "sub/deep er/q?.png", "sub/[br].png", "sub/semi;colon.png", "'quote'.png",
         "tilde~.png", "UPPER.PNG"]
LABEL_CONFIG = ('<View><Image name="img" value="$image"/><Choices name="c" toName="img">'
                '<Choice value="a"/></Choices></View>')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> bytes:
        headers = {"Authorization": f"Token {self.token}"}
        if body is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=REQUEST_SECONDS) as response:
            return response.read()

    def json(self, method: str, path: str, payload: dict | None = None):
        body = None if payload is None else json.dumps(payload).encode()
        return json.loads(self.request(method, path, body))


@pytest.fixture
def server(tmp_path):
    document_root = tmp_path / "docroot"
    document_root.mkdir()
    port, token = _free_port(), secrets.token_hex(20)
    env = {**os.environ,
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
           "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls-data"),
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "COLLECT_ANALYTICS": "false"}
    log = open(tmp_path / "label-studio.log", "wb")  # closed in the finally below
    proc = subprocess.Popen(
        [EXECUTABLE, "start", "--no-browser", "--internal-host", "127.0.0.1",
         "--port", str(port), "--username", "nfpf@example.org", "--password", token,
         "--user-token", token],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, (tmp_path / "label-studio.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(base + "/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.time() < deadline, "Label Studio did not start in time"
            time.sleep(1)
        yield _Server(base, token), document_root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_label_studio_imports_every_pick_and_serves_every_image(server, tmp_path):
    api, document_root = server
    photos = document_root / "photos"
    for i, name in enumerate(NAMES):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16 + i, 12), (20 * i, 255 - 20 * i, 7)).save(
            photos / name, format="PNG")
    out = tmp_path / "picks"
    select_images(photos, len(NAMES), out, selector="random", cache=False, progress=False)
    tasks_file = out / "label_studio.json"

    project = api.json("POST", "/api/projects",
                       {"title": "nfpf", "label_config": LABEL_CONFIG})["id"]
    api.json("POST", "/api/storages/localfiles",
             {"project": project, "title": "photos", "path": str(photos),
              "use_blob_urls": False})
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"label_studio.json\"\r\nContent-Type: application/json\r\n\r\n"
            ).encode() + tasks_file.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    api.request("POST", f"/api/projects/{project}/import", body,
                content_type=f"multipart/form-data; boundary={boundary}")

    listed = api.json("GET", f"/api/tasks?project={project}&page_size=100")
    tasks = listed["tasks"] if isinstance(listed, dict) else listed
    assert len(tasks) == len(NAMES)
    expected = json.loads(tasks_file.read_text())
    by_url = {task["data"]["image"]: task for task in expected}
    served = set()
    for task in tasks:
        data = task["data"]
        mine = by_url[data["image"]]
        assert data["rank"] == mine["data"]["rank"] and "score" in data
        path = mine["meta"]["path"]
        assert api.request("GET", data["image"]) == (photos / path).read_bytes(), path
        served.add(path)
    assert served == set(NAMES)
