"""A data directory the node cannot use is one line naming the path and what to do."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "support"))
from processes import free_port  # noqa: E402

BIN = os.environ.get("BIFROST_BIN", os.path.join(os.path.dirname(__file__), "..", "..", ".build", "debug"))


def serve(data: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, "bifrost"), "serve", "--data", data], capture_output=True, text=True,
                          timeout=60)


def test_a_data_dir_that_is_a_file_is_refused_naming_it(tmp_path):
    file = tmp_path / "plain-file"
    file.write_text("x")
    for path, says in [(str(file), "is a file, not a directory"), (str(file / "node"), f"{file} is a file")]:
        result = serve(path)
        assert result.returncode == 2, result
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert path in lines[0] and says in lines[0], lines[0]
        assert "NSCocoaErrorDomain" not in result.stderr


def test_a_new_data_dir_is_owner_only(tmp_path):
    data = tmp_path / "fresh"
    p = subprocess.Popen([os.path.join(BIN, "bifrost"), "serve", "--data", str(data), "--bind", f"127.0.0.1:{free_port()}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if (data / "data.mdb").exists():
                break
            subprocess.run(["sleep", "0.05"])
        assert (data / "data.mdb").exists()
        assert data.stat().st_mode & 0o777 == 0o700
        assert (data / "data.mdb").stat().st_mode & 0o777 == 0o600
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_bifrost_dump_on_a_dir_it_may_not_read_says_permission_denied(tmp_path):
    import shutil
    import pytest

    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to try the dump as another user")
    import tempfile

    parent = tempfile.mkdtemp(prefix="bifrost-perm-")
    try:
        os.chmod(parent, 0o755)
        data = os.path.join(parent, "owner-only")
        os.mkdir(data, 0o700)
        open(os.path.join(data, "data.mdb"), "wb").close()
        # The data dir itself owner-only, and a data dir below an owner-only directory.
        for path in [data, str(tmp_path / "below-owner-only")]:
            result = subprocess.run(["runuser", "-u", "nobody", "--", os.path.join(BIN, "bifrost-dump"), path],
                                    capture_output=True, text=True, timeout=60)
            if "bifrost-dump:" not in result.stderr:
                pytest.skip("the build directory is not executable by nobody here")
            assert result.returncode != 0, result
            assert "permission denied" in result.stderr, result.stderr
            assert "not a Bifrost data directory" not in result.stderr, result.stderr
            assert "no such data directory" not in result.stderr, result.stderr
    finally:
        shutil.rmtree(parent)
