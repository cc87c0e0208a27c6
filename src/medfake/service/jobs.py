"""Background jobs: a bounded worker pool and a bounded queue, progress, timeouts, expiring results.

A job is a function `fn(job) -> dict` that writes its files into `job.dir` and returns a JSON-able summary
(saved as result.json). Workers run in a ThreadPoolExecutor so the event loop never blocks. Results live in a
temporary folder and are deleted `ttl_s` seconds after the job finished.
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..io.errors import MedfakeError

log = logging.getLogger("medfake.service.jobs")

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
STATES = ("queued", "running", "done", "failed", "expired")


class QueueFullError(Exception):
    pass


class JobTimeout(Exception):
    pass


@dataclass
class Job:
    id: str
    kind: str
    params: dict
    dir: Path
    timeout_s: float
    state: str = "queued"
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    summary: dict | None = None
    future: Future | None = None

    def set_progress(self, done: float, total: float = 1.0) -> None:
        """Progress callback for samplers; also the cooperative timeout check."""
        if self.started is not None and time.time() - self.started > self.timeout_s:
            raise JobTimeout(f"job exceeded its time limit of {self.timeout_s:g} s")
        if total > 0:
            self.progress = float(min(max(done / total, 0.0), 1.0))

    def public(self) -> dict[str, Any]:
        d = {"id": self.id, "kind": self.kind, "state": self.state, "progress": round(self.progress, 4),
             "error": self.error, "created": self.created, "started": self.started, "finished": self.finished,
             "params": self.params}
        if self.state == "done":
            d["result_url"] = f"/v1/jobs/{self.id}/result"
            d["summary"] = self.summary
        return d


class JobManager:
    def __init__(self, workers: int = 1, queue_size: int = 16, timeout_s: float = 900.0, ttl_s: float = 3600.0,
                 root: str | Path | None = None, redact: Callable[[str], str] = lambda s: s):
        if workers < 1 or queue_size < 1:
            raise ValueError("job_workers and job_queue must be ≥ 1")
        self.workers = workers
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="medfake-jobs-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="medfake-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._redact = redact

    # ------------------------------------------------------------ submit / query
    def pending(self) -> int:
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def submit(self, kind: str, fn: Callable[[Job], dict], params: dict | None = None) -> Job:
        self.sweep()
        with self._lock:
            if self._closed:
                raise QueueFullError("the server is shutting down")
            active = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
            if active >= self.queue_size + self.workers:
                raise QueueFullError(f"job queue is full ({active} jobs queued or running); try again later")
            jid = uuid.uuid4().hex
            d = self.root / jid
            d.mkdir(parents=True)
            job = Job(jid, kind, dict(params or {}), d, self.timeout_s)
            self._jobs[jid] = job
        job.future = self._pool.submit(self._run, job, fn)
        log.info("job %s (%s) queued", jid, kind)
        return job

    def get(self, job_id: str) -> Job | None:
        if not JOB_ID.match(job_id or ""):
            return None
        self.sweep()
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None and job.state in ("queued", "running") and job.started is not None \
                and time.time() - job.started > job.timeout_s + 5:
            job.state, job.error, job.finished = "failed", f"job exceeded its time limit of {job.timeout_s:g} s", time.time()
        return job

    def result_zip(self, job: Job) -> bytes:
        """All files of a finished job as one zip (built in memory; results are small)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted(job.dir.rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(job.dir).as_posix())
        return buf.getvalue()

    # ------------------------------------------------------------ running
    def _run(self, job: Job, fn: Callable[[Job], dict]) -> None:
        if job.state != "queued":
            return
        job.state, job.started = "running", time.time()
        try:
            summary = fn(job) or {}
            if time.time() - job.started > job.timeout_s:
                raise JobTimeout(f"job exceeded its time limit of {job.timeout_s:g} s")
            (job.dir / "result.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
            job.summary, job.progress, job.state = summary, 1.0, "done"
            log.info("job %s done in %.1f s", job.id, time.time() - job.started)
        except (MedfakeError, ValueError, JobTimeout) as e:  # user-actionable: message is safe to show
            job.state, job.error = "failed", self._redact(str(e))
            shutil.rmtree(job.dir, ignore_errors=True)
            log.info("job %s failed: %s", job.id, type(e).__name__)
        except Exception as e:  # noqa: BLE001 - never leak internals; log type + frames (no values)
            job.state, job.error = "failed", "internal error while running the job"
            shutil.rmtree(job.dir, ignore_errors=True)
            log.error("job %s crashed: %s\n%s", job.id, type(e).__name__, "".join(traceback.format_tb(e.__traceback__)))
        finally:
            job.finished = time.time()

    # ------------------------------------------------------------ expiry / shutdown
    def sweep(self) -> int:
        """Delete results older than ttl_s; their jobs read as 'expired'. Returns how many expired now."""
        now, n = time.time(), 0
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.state in ("done", "failed") and job.finished is not None and now - job.finished > self.ttl_s:
                shutil.rmtree(job.dir, ignore_errors=True)
                job.state, job.summary = "expired", None
                n += 1
        with self._lock:  # forget tombstones after another TTL
            for jid in [j.id for j in self._jobs.values() if j.state == "expired" and now - (j.finished or now) > 2 * self.ttl_s]:
                del self._jobs[jid]
        return n

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            for j in self._jobs.values():
                if j.state == "queued":
                    j.state, j.error = "failed", "server shut down before the job started"
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
