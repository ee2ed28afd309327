"""Ingest into the real stack: every source kind, reruns that write nothing, and bad inputs that write nothing."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from robolake.errors import RobolakeError
from robolake.ingest.pipeline import ingest
from robolake.stack.native import NativeStack
from robolake.stack.process import free_port
from robolake.umi import generate_dataset
from robolake.umi.replay_buffer import ReplayBufferWriter, encode_frame
from tests.conftest import s3_client
from tests.stackutil import settings_env
from tests.umidata import random_lowdim

pytestmark = pytest.mark.integration
LENGTHS = (7, 5, 6, 4)
IMG = 32
BUCKETS = ("umi-raw", "umi-experiments")


# ---- inputs ------------------------------------------------------------------------------------


def write_buffer(path: Path, robots: int = 1, poses: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    cams = tuple(f"camera{c}_rgb" for c in range(robots))
    episodes = random_lowdim(LENGTHS, robots=robots, poses=poses, seed=11)
    frame = encode_frame(np.full((IMG, IMG, 3), 90, np.uint8))
    with ReplayBufferWriter(path, cameras=cams, image_size=(IMG, IMG)) as writer:
        for k, ep in enumerate(episodes):
            writer.add_episode(ep, {cam: [frame] * LENGTHS[k] for cam in cams})
    return path, episodes


def _rewrite(src: Path, dst: Path, drop: str = "", patch: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if drop and info.filename.startswith(drop):
                continue
            zout.writestr(info, (patch or {}).get(info.filename, zin.read(info.filename)))
    return dst


def write_mpeg4(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(8):
            container.mux(
                stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 20, np.uint8), format="rgb24"))
            )
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ingest-inputs")
    generated = d / "generated"
    generate_dataset(generated, profile="tiny", seed=3, experiments=True)
    videos = d / "videos"
    shutil.copytree(generated / "video", videos)
    mp4_zip = d / "cup_mp4s.zip"
    with zipfile.ZipFile(mp4_zip, "w") as zf:
        for mp4 in sorted(videos.iterdir()):
            zf.write(mp4, f"demos/{mp4.stem}/raw_video.mp4")
    return {
        "generated": generated,
        "videos": videos,
        "mp4_zip": mp4_zip,
        "single": write_buffer(d / "cup.zarr.zip")[0],
        "bimanual": write_buffer(d / "bimanual_cloth.zarr.zip", robots=2, poses=False)[0],
    }


# ---- helpers -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(stack: NativeStack) -> Any:
    s = stack.settings
    return s3_client(s.minio_endpoints[0], s.minio_root_user, s.minio_root_password)


def lake_state(client: Any) -> dict[tuple[str, str], tuple[str, Any]]:
    """Every object of the lake's buckets with its ETag and LastModified."""
    state = {}
    for bucket in BUCKETS:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                state[(bucket, obj["Key"])] = (obj["ETag"], obj["LastModified"])
    return state


def name() -> str:
    return f"it_{uuid.uuid4().hex[:8]}"


def read_json(client: Any, key: str) -> Any:
    return json.loads(client.get_object(Bucket="umi-raw", Key=key)["Body"].read())


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from `root`; honours `Range: bytes=N-`; /flaky/<file> breaks off its first answer."""

    root: Path
    seen: list[tuple[str, str]]
    broken: set[str]

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Range", "")))
        flaky = self.path.startswith("/flaky/")
        path = self.root / self.path.removeprefix("/flaky/").lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if flaky and self.path not in self.broken:
            self.broken.add(self.path)
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def http_root(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    root = tmp_path_factory.mktemp("http")
    for key in ("single", "mp4_zip"):
        shutil.copy(inputs[key], root / inputs[key].name)
    shutil.copy(inputs["generated"] / "replay_buffer" / "dataset.zarr.zip", root / "tiny_task.zarr.zip")  # ~5 MB
    handler = type("Handler", (RangeHandler,), {"root": root, "seen": [], "broken": set()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


# ---- good inputs -------------------------------------------------------------------------------


def test_replay_buffer_is_split_by_episode_ends_and_a_rerun_writes_nothing(
    stack: NativeStack, client: Any, inputs: dict[str, Path]
) -> None:
    ds = name()
    result = ingest(inputs["single"], stack.settings, dataset_name=ds)
    assert (result.kind, result.episodes, result.objects) == ("replay_buffer", 4, 2 * 4 + 2)
    assert result.upload.objects == result.objects and result.manifest_written
    keys = {k for b, k in lake_state(client) if b == "umi-raw" and ds in k}
    assert keys == {
        *(f"{s}/{ds}/episode_{i:05d}.json" for s in ("pose", "gripper") for i in range(4)),
        f"original/{ds}/cup.zarr.zip",
        f"manifests/{ds}.json",
    }

    episodes = random_lowdim(LENGTHS, seed=11)
    pose = read_json(client, f"pose/{ds}/episode_00001.json")
    assert (pose["first_step"], pose["frame_count"], pose["episode_index"]) == (7, 5, 1)
    np.testing.assert_allclose(pose["robots"]["robot0"]["eef_position_m"], episodes[1]["robot0_eef_pos"], atol=1e-6)
    np.testing.assert_allclose(
        pose["robots"]["robot0"]["demo_start_pose"], episodes[1]["robot0_demo_start_pose"][0], atol=1e-6
    )
    grip = read_json(client, f"gripper/{ds}/episode_00003.json")
    np.testing.assert_allclose(
        grip["robots"]["robot0"]["width_m"], episodes[3]["robot0_gripper_width"][:, 0], atol=1e-6
    )
    head = client.head_object(Bucket="umi-raw", Key=f"pose/{ds}/episode_00001.json")
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] | {"sha256": ""} == {
        "dataset": ds,
        "episode": "1",
        "sensor": "pose",
        "schema-version": "1",
        "sha256": "",
    }
    original = client.get_object(Bucket="umi-raw", Key=f"original/{ds}/cup.zarr.zip")["Body"].read()
    assert original == inputs["single"].read_bytes()
    manifest = read_json(client, f"manifests/{ds}.json")
    assert manifest["sources"]["replay_buffer"]["episodes"] == 4 and len(manifest["objects"]) == 9
    assert all(len(o["sha256"]) == 64 for o in manifest["objects"])

    before = lake_state(client)
    again = ingest(inputs["single"], stack.settings, dataset_name=ds)
    assert (again.upload.objects, again.upload.skipped, again.manifest_written) == (0, result.objects, False)
    assert lake_state(client) == before


def test_bimanual_buffer_keeps_both_arms(stack: NativeStack, client: Any, inputs: dict[str, Path]) -> None:
    ds = name()
    ingest(inputs["bimanual"], stack.settings, dataset_name=ds)
    pose = read_json(client, f"pose/{ds}/episode_00002.json")
    assert sorted(pose["robots"]) == ["robot0", "robot1"]
    assert "demo_start_pose" not in pose["robots"]["robot1"]
    expected = random_lowdim(LENGTHS, robots=2, poses=False, seed=11)[2]["robot1_eef_rot_axis_angle"]
    np.testing.assert_allclose(pose["robots"]["robot1"]["eef_rot_axis_angle"], expected, atol=1e-6)
    assert sorted(read_json(client, f"gripper/{ds}/episode_00000.json")["robots"]) == ["robot0", "robot1"]


def test_mp4_zip_and_folder_become_episode_videos_merged_into_one_manifest(
    stack: NativeStack, client: Any, inputs: dict[str, Path]
) -> None:
    ds = name()
    ingest(inputs["single"], stack.settings, dataset_name=ds)
    result = ingest(inputs["mp4_zip"], stack.settings, dataset_name=ds)
    assert (result.kind, result.episodes) == ("videos", 2)
    for i, mp4 in enumerate(sorted(inputs["videos"].iterdir())):
        body = client.get_object(Bucket="umi-raw", Key=f"video/{ds}/episode_{i:05d}.mp4")["Body"].read()
        assert body == mp4.read_bytes()
    manifest = read_json(client, f"manifests/{ds}.json")
    assert set(manifest["sources"]) == {"replay_buffer", "videos"}
    assert manifest["sources"]["videos"]["episodes"][1]["name"] == "demos/episode_00001/raw_video.mp4"
    assert len(manifest["objects"]) == 9 + 2 + 1

    folder_ds = name()
    folder = ingest(inputs["videos"], stack.settings, dataset_name=folder_ds)
    assert (folder.kind, folder.objects) == ("videos", 2 + 1)
    head = client.head_object(Bucket="umi-raw", Key=f"video/{folder_ds}/episode_00001.mp4")
    assert head["ContentType"] == "video/mp4"


def test_generated_layout_and_its_experiment_configs(stack: NativeStack, client: Any, inputs: dict[str, Path]) -> None:
    result = ingest(inputs["generated"], stack.settings)
    ds = result.dataset
    assert ds == "synthetic_tiny_s3_e2" and result.kind == "generated"
    state = lake_state(client)
    assert ("umi-experiments", f"configs/{ds}/experiment_002.yaml") in state
    assert ("umi-raw", f"original/{ds}/replay_buffer/dataset.zarr.zip") in state
    assert ("umi-raw", f"video/{ds}/episode_00001.mp4") in state
    again = ingest(inputs["generated"], stack.settings)
    assert again.upload.objects == 0 and lake_state(client) == state


def test_url_download_resumes_with_range_and_checks_sha256(
    stack: NativeStack, client: Any, inputs: dict[str, Path], http_root: tuple[str, Any], tmp_path: Path
) -> None:
    base, handler = http_root
    data = (inputs["generated"] / "replay_buffer" / "dataset.zarr.zip").read_bytes()
    url = f"{base}/flaky/tiny_task.zarr.zip"  # the server breaks off its first answer half-way
    result = ingest(url, stack.settings, sha256=hashlib.sha256(data).hexdigest(), download_dir=tmp_path)
    assert (result.source, result.dataset, result.episodes) == (url, "tiny_task", 2)
    ranges = [r for p, r in handler.seen if p == "/flaky/tiny_task.zarr.zip"]
    assert len(ranges) == 2 and ranges[0] == ""
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= len(data) // 2  # the second request continued the partial file
    assert client.get_object(Bucket="umi-raw", Key="original/tiny_task/tiny_task.zarr.zip")["Body"].read() == data
    assert not list(tmp_path.rglob("*.partial"))


# ---- bad inputs: one clear line naming the file, nothing written --------------------------------


def _bad_cases(inputs: dict[str, Path], d: Path, base: str) -> dict[str, tuple[str, dict[str, Any], str, str]]:
    """case -> (source, ingest kwargs, the name the message must contain, the problem it must state)."""
    single = inputs["single"]
    with zipfile.ZipFile(single) as z:
        ends = np.frombuffer(z.read("meta/episode_ends/0"), dtype="<i8").copy()
        cam_meta = json.loads(z.read("data/camera0_rgb/.zarray"))
    ends[len(LENGTHS) - 1] -= 1  # the chunk is padded past the last episode
    truncated = d / "truncated.zarr.zip"
    truncated.write_bytes(single.read_bytes()[: single.stat().st_size // 2])
    not_zarr = d / "notes.zarr.zip"
    with zipfile.ZipFile(not_zarr, "w") as z:
        z.writestr("readme.txt", "not a store")
    plain_zip = d / "misc.zip"
    with zipfile.ZipFile(plain_zip, "w") as z:
        z.writestr("readme.txt", "neither")
    bad_meta = json.dumps({**cam_meta, "compressor": {"id": "foo_v9"}}).encode()
    codec = _rewrite(single, d / "codec.zarr.zip", patch={"data/camera0_rgb/.zarray": bad_meta})
    mpeg4_dir = d / "mpeg4_videos"
    mpeg4_dir.mkdir()
    write_mpeg4(mpeg4_dir / "episode_00000.mp4")
    cut_dir = d / "cut_videos"
    cut_dir.mkdir()
    first = sorted(inputs["videos"].iterdir())[0]
    (cut_dir / "episode_00000.mp4").write_bytes(first.read_bytes()[:5000])
    damaged_zip = d / "damaged_mp4s.zip"
    raw = bytearray(inputs["mp4_zip"].read_bytes())
    raw[2000] ^= 0xFF  # inside the first stored MP4: its CRC-32 no longer matches
    damaged_zip.write_bytes(bytes(raw))
    changed = d / "changed_layout"
    shutil.copytree(inputs["generated"], changed)
    (changed / "gripper" / "episode_00001.json").write_bytes(b'{"tampered": true}\n')
    dead = f"http://127.0.0.1:{free_port()}/cup.zarr.zip"
    return {
        "truncated zip": (str(truncated), {}, truncated.name, "truncated"),
        "missing robot0_eef_pos": (
            str(_rewrite(single, d / "nopos.zarr.zip", drop="data/robot0_eef_pos/")),
            {},
            "nopos.zarr.zip",
            "robot0_eef_pos",
        ),
        "episode_ends vs arrays": (
            str(_rewrite(single, d / "ends.zarr.zip", patch={"meta/episode_ends/0": ends.tobytes()})),
            {},
            "ends.zarr.zip",
            "episode_ends disagrees with the array lengths",
        ),
        "unknown zarr codec": (str(codec), {}, codec.name, "unknown codec id 'foo_v9'"),
        "unknown video codec": (str(mpeg4_dir), {}, "episode_00000.mp4", "unknown video codec 'mpeg4'"),
        "not a zarr store": (str(not_zarr), {}, not_zarr.name, "not a zarr v2 store"),
        "zip of neither": (str(plain_zip), {}, plain_zip.name, "not a zarr store"),
        "truncated mp4": (str(cut_dir), {}, "episode_00000.mp4", "not a readable MP4"),
        "damaged mp4 zip": (str(damaged_zip), {}, damaged_zip.name, "cannot be read"),
        "layout changed": (str(changed), {}, "episode_00001.json", "manifest.json says"),
        "unreachable url": (dead, {}, dead, "cannot connect"),
        "checksum mismatch": (
            f"{base}/cup.zarr.zip",
            {"sha256": "0" * 64},
            f"{base}/cup.zarr.zip",
            "expected " + "0" * 64,
        ),
        "local checksum mismatch": (str(single), {"sha256": "1" * 64}, single.name, "expected " + "1" * 64),
    }


BAD = (
    "truncated zip",
    "missing robot0_eef_pos",
    "episode_ends vs arrays",
    "unknown zarr codec",
    "unknown video codec",
    "not a zarr store",
    "zip of neither",
    "truncated mp4",
    "damaged mp4 zip",
    "layout changed",
    "unreachable url",
    "checksum mismatch",
    "local checksum mismatch",
)


@pytest.fixture(scope="module")
def bad_cases(
    inputs: dict[str, Path], http_root: tuple[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, dict[str, Any], str, str]]:
    return _bad_cases(inputs, tmp_path_factory.mktemp("bad"), http_root[0])


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_rejected_in_one_line_and_nothing_is_written(
    stack: NativeStack, client: Any, bad_cases: dict[str, Any], case: str, tmp_path: Path
) -> None:
    source, kwargs, shown, problem = bad_cases[case]
    before = lake_state(client)
    with pytest.raises(RobolakeError) as err:
        ingest(source, stack.settings, dataset_name=f"bad_{uuid.uuid4().hex[:6]}", download_dir=tmp_path, **kwargs)
    message = str(err.value)
    assert shown in message and problem in message, message
    assert "\n" not in message
    assert lake_state(client) == before
    assert not list(tmp_path.rglob("*.zarr.zip"))  # a download with the wrong checksum is not kept


def test_cli_ingest_prints_one_error_line_or_json(
    stack: NativeStack, bad_cases: dict[str, Any], inputs: dict[str, Path]
) -> None:
    robolake = str(Path(sys.executable).parent / "robolake")
    env = settings_env(stack.settings)
    source, _, shown, problem = bad_cases["missing robot0_eef_pos"]
    bad = subprocess.run(
        [robolake, "ingest", source], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert bad.returncode == 3 and "Traceback" not in bad.stderr
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and shown in errors[0] and problem in errors[0]
    ds = name()
    good = subprocess.run(
        [robolake, "ingest", str(inputs["bimanual"]), "--name", ds, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert good.returncode == 0, good.stderr
    doc = json.loads(good.stdout)
    assert doc["dataset"] == ds and doc["episodes"] == 4 and doc["upload"]["failures"] == []
