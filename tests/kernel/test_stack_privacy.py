"""The state directory is its owner's: private modes, services' umask, no secret in a log.

Checked without a stack on a made-up state directory; the running stack's own files are
checked in tests/governance/test_security.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from geomlops.stack import process
from geomlops.stack.state import StatePaths, generated_secrets, redact_logs, restrict

PASSWORD = "Zq4pXv9LmW2rT7yB"


def test_restrict_takes_group_and_other_access_away(tmp_path: Path) -> None:
    home = tmp_path / "home"
    paths = StatePaths(home)
    paths.ensure()
    volume = home / "s3" / "data" / "1.dat"
    volume.parent.mkdir(parents=True)
    volume.write_text("model weights")
    pg_file = home / "postgres" / "data" / "PG_VERSION"
    pg_file.parent.mkdir(parents=True)
    pg_file.write_text("15")
    for path in (home, home / "s3", volume.parent):
        path.chmod(0o755)
    volume.chmod(0o644)
    pg_file.chmod(0o644)
    restrict(paths, keep=(pg_file.parent,))
    assert volume.stat().st_mode & 0o777 == 0o600
    assert (home / "s3").stat().st_mode & 0o777 == 0o700
    assert home.stat().st_mode & 0o777 == 0o710  # a traverse-only mask for `postgres`
    assert pg_file.parent.stat().st_mode & 0o777 == 0o700
    assert pg_file.stat().st_mode & 0o777 == 0o644  # PostgreSQL's own directory: not entered
    assert restrict(paths, keep=(pg_file.parent,)) == []


def test_logs_from_earlier_versions_lose_every_generated_secret(tmp_path: Path) -> None:
    paths = StatePaths(tmp_path)
    paths.ensure()
    (paths.secrets_dir / "postgres.json").write_text(json.dumps({"password": PASSWORD}))
    log = paths.log_file("mlflow")
    old = f"=== mlflow server --backend-store-uri postgresql://geomlops:{PASSWORD}@127.0.0.1/m\n"
    log.write_text(old * 3)
    inode = log.stat().st_ino
    assert redact_logs(paths, generated_secrets(paths)) == [log]
    text = log.read_text()
    assert PASSWORD not in text and "geomlops:" + "*" * len(PASSWORD) + "@" in text
    assert log.stat().st_ino == inode and len(text) == len(old) * 3  # in place, same size


def test_services_start_private_and_their_log_header_hides_url_passwords(
    tmp_path: Path,
) -> None:
    log, pid = tmp_path / "logs" / "svc.log", tmp_path / "svc.pid"
    argv = ["sh", "-c", "touch made-by-service; sleep 30", f"postgresql://u:{PASSWORD}@h:1"]
    process.spawn(argv, log_file=log, pid_file=pid, env=dict(os.environ), cwd=tmp_path)
    try:
        made = tmp_path / "made-by-service"
        for _ in range(50):
            if made.exists():
                break
            time.sleep(0.1)
        assert made.stat().st_mode & 0o777 == 0o600
        assert log.stat().st_mode & 0o777 == 0o600
        assert PASSWORD not in log.read_text() and "postgresql://u:***@h:1" in log.read_text()
    finally:
        process.stop(pid, timeout=5)
