"""Separate a batch on Ray: embedded on this machine (--workers) or on a cluster (--ray-address).

Imported only when one of those flags is given; ``ray`` is the optional
``cluster`` extra (``pip install 'stemstream[cluster]'``).

Each worker is a Ray actor holding one ``batch.Separation``: it loads the
model once and runs ``offline.separate_file`` per track, exactly as the
in-process run does, with one model thread per CPU Ray gave it. The driver
keeps at most one track in flight per worker and hands the next one to
whichever worker finishes first. When a worker process dies (killed, out of
memory, its machine gone) its track goes back to the front of the queue,
to be picked up by another worker, at most ``retries`` times; the dead
worker is replaced by a fresh one. A bad file is not a death: the worker
returns it as failed and goes on.

A cluster's workers must run the same stemstream and the same model: each
worker reports the hash of its model card, and a worker whose hash differs
from the first worker's stops the batch rather than mixing two models'
stems in one output folder.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
from collections import deque
from pathlib import Path

from .batch import BatchError, Job, Separation, Settings


class ClusterError(BatchError):
    """Ray is missing, cannot start, or its workers cannot load the model; the message says which."""


def local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _worker_class(ray):
    @ray.remote
    class SeparationWorker:
        """A Ray actor: one worker process, one loaded model."""

        def __init__(self, settings: Settings):
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
            self.threads = max(1, int(round(cpus)))
            self.error = None
            try:
                self.separation = Separation(settings, threads=self.threads)
            except Exception as exc:  # noqa: BLE001 - reported by identity(), named by the driver
                self.separation, self.error = None, f"{type(exc).__name__}: {exc}"

        def identity(self) -> dict:
            if self.separation is None:
                import socket

                return {"worker": f"{socket.gethostname()}:{os.getpid()}", "error": self.error}
            return self.separation.identity()

        def run(self, job: Job) -> dict:
            return self.separation.run(job)

    return SeparationWorker


PROBE_TIMEOUT = 5.0


def probe_address(address: str, timeout: float = PROBE_TIMEOUT) -> None:
    """ClusterError at once when nothing listens at ``HOST:PORT`` (``ray://HOST:PORT`` too); ``auto``
    and addresses without a port are left to Ray."""
    import socket

    text = address.split("://", 1)[1] if "://" in address else address
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit():
        return
    host = host.strip("[]") or "127.0.0.1"
    try:
        socket.create_connection((host, int(port_text)), timeout=timeout).close()
    except (OSError, OverflowError, ValueError) as exc:
        reason = "no answer within %.0f s" % timeout if isinstance(exc, socket.timeout) else \
            (getattr(exc, "strerror", None) or str(exc))
        raise ClusterError(f"cannot join the Ray cluster at {address}: nothing answers there ({reason}); "
                           f"start one with `ray start --head --port {port_text}`, or leave out --ray-address "
                           f"to separate here") from None


class RayExecutor:
    """``batch.run_batch``'s executor on Ray; ``close()`` disconnects (and stops an embedded Ray)."""

    STARTUP_TIMEOUT = 600.0  # seconds to wait for the first worker (a cluster may have to scale up)
    BOOT_DEATHS = 3  # a worker slot whose process dies this many times in a row while starting is given up

    def __init__(self, settings: Settings, workers: int | None = None, address: str | None = None,
                 worker_cpus: int = 1, retries: int = 2, tracks: int = 1):
        try:
            import ray
        except ImportError:
            raise ClusterError("--workers and --ray-address need Ray: pip install 'stemstream[cluster]' "
                               "(or pip install ray)") from None
        if workers is not None and workers < 1:
            raise ClusterError(f"--workers {workers}: give at least 1 (or --workers alone: one per core)")
        if worker_cpus < 1:
            raise ClusterError(f"--worker-cpus {worker_cpus}: give at least 1")
        if retries < 0:
            raise ClusterError(f"--retries {retries}: give 0 or more")
        self.ray, self.settings, self.retries, self.worker_cpus = ray, settings, retries, worker_cpus
        self.embedded = address is None
        init = dict(logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
        # ray.init installs its own SIGTERM handling (log and exit 1); the CLI's own handlers come back
        # afterwards, so a stopped batch still cleans up and exits 128 + signal like any stemstream run.
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            if self.embedded:
                n = workers or max(1, min(local_cores() // worker_cpus, tracks))
                # The workers run the driver's stemstream, wherever it was imported from (a checkout, a
                # venv): Ray's processes inherit this environment. (A runtime_env would do the same but
                # costs ~2 s more per worker start, measured here.)
                root = str(Path(__file__).resolve().parent.parent)
                saved = os.environ.get("PYTHONPATH")
                os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, saved) if p)
                try:
                    # "local": always a new Ray of our own, even where `ray start` left one running here
                    ray.init(address="local", num_cpus=n * worker_cpus, include_dashboard=False,
                             object_store_memory=100 << 20, **init)
                finally:
                    if saved is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = saved
            else:
                probe_address(address)  # nothing there: a message in seconds, not Ray's 90 s wait
                ray.init(address=address, **init)
                cluster_cpus = int(ray.cluster_resources().get("CPU", 0))
                n = workers or max(1, min(cluster_cpus // worker_cpus, tracks))
        except ClusterError:
            raise
        except Exception as exc:  # noqa: BLE001 - ray raises ConnectionError, RuntimeError, ValueError...
            self._shutdown()
            if address:
                hint = ("" if os.environ.get("RAY_AUTH_MODE") else
                        "; if the cluster uses token authentication (the default of `ray start` in Ray 2.60), "
                        "set RAY_AUTH_MODE=token and give this machine its token (~/.ray/auth_token)")
                raise ClusterError(f"cannot join the Ray cluster at {address}: {type(exc).__name__}: {exc}{hint}") \
                    from None
            raise ClusterError(f"cannot start an embedded Ray: {type(exc).__name__}: {exc}") from None
        finally:
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
        self.workers = n
        self._cls = _worker_class(ray)
        self.slots = [self._spawn() for _ in range(n)]
        self.deaths = 0
        try:
            first = ray.get(self.slots[0].identity.remote(), timeout=self.STARTUP_TIMEOUT)
        except Exception as exc:  # noqa: BLE001
            self.close()
            raise ClusterError(f"the first Ray worker did not start: {type(exc).__name__}: {exc}") from None
        if first.get("error"):
            self.close()
            raise ClusterError(f"worker {first['worker']} cannot load the model: {first['error']}")
        self.model, self.model_hash = first["model"], first["model_hash"]

    def _spawn(self):
        return self._cls.options(num_cpus=self.worker_cpus, max_restarts=0, max_task_retries=0).remote(self.settings)

    def _check(self, ident: dict) -> None:
        if ident.get("error"):
            raise ClusterError(f"worker {ident['worker']} cannot load the model: {ident['error']}")
        if ident["model_hash"] != self.model_hash:
            raise ClusterError(
                f"worker {ident['worker']} has a different {ident['model']!r} (model card hash "
                f"{ident['model_hash'][:12]}, the first worker's is {self.model_hash[:12]}); install the same "
                f"stemstream and models on every machine")

    def __call__(self, pending: list[Job], start, finish) -> None:
        ray = self.ray
        from ray.exceptions import (NodeDiedError, OutOfMemoryError, RayActorError, RayTaskError,
                                    WorkerCrashedError)

        deaths = (RayActorError, WorkerCrashedError, OutOfMemoryError, NodeDiedError)
        queue = deque(pending)
        attempts: dict[str, int] = {}
        waiting: dict = {}  # ObjectRef -> ("ready", slot) | ("run", slot, job)
        names: dict[int, str] = {}  # slot -> worker id

        def ask_identity(i: int):
            waiting[self.slots[i].identity.remote()] = ("ready", i)

        def give(i: int):
            if queue:
                job = queue.popleft()
                start(job, names[i])
                remote_job = dataclasses.replace(job, path=job.key)  # absolute: workers have their own cwd
                waiting[self.slots[i].run.remote(remote_job)] = ("run", i, job)

        for i in range(len(self.slots)):
            ask_identity(i)
        boot_deaths = [0] * len(self.slots)  # a slot's workers that died before they were ready, in a row

        def busy() -> bool:
            return any(w[0] == "run" for w in waiting.values())

        # Until every track is handed out and back. Workers still starting when the queue runs dry (a
        # cluster short of CPUs for all of them) are not waited for.
        while (queue and waiting) or busy():
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=0.25)  # wakes for signals (Ctrl-C, SIGTERM)
            if not done:
                continue
            ref = done[0]
            kind, i, *rest = waiting.pop(ref)
            try:
                value = ray.get(ref)
            except deaths as exc:
                self.deaths += 1
                cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if kind == "run":
                    job = rest[0]
                    attempts[job.track] = attempts.get(job.track, 0) + 1
                    if attempts[job.track] <= self.retries:
                        queue.appendleft(job)  # the next free worker takes it
                    else:
                        finish(job, {"worker": names.get(i, "?"), "status": "failed", "elapsed": 0.0,
                                     "error": f"{job.path}: its worker process died {attempts[job.track]} times "
                                              f"(killed or out of memory?); last: {type(exc).__name__}: {cause}"})
                if kind == "ready":
                    boot_deaths[i] += 1
                if queue and boot_deaths[i] <= self.BOOT_DEATHS:
                    self.slots[i] = self._spawn()  # a fresh process in the dead one's place
                    ask_identity(i)
                continue
            except RayTaskError as exc:  # a bug in stemstream, not in the file: record it and go on
                if kind != "run":
                    raise ClusterError(f"a Ray worker failed to start: {exc}") from None
                job = rest[0]
                finish(job, {"worker": names[i], "status": "failed", "elapsed": 0.0,
                             "error": f"{job.path}: internal error in the worker: {exc.cause!r}"})
                give(i)
                continue
            if kind == "ready":
                self._check(value)
                names[i], boot_deaths[i] = value["worker"], 0
            else:
                finish(rest[0], value)
            give(i)
        if queue:  # every worker died while starting, again and again
            for job in queue:
                finish(job, {"worker": "?", "status": "failed", "elapsed": 0.0,
                             "error": f"{job.path}: no Ray worker left to run it"})

    def _shutdown(self) -> None:
        try:
            self.ray.shutdown()
        except Exception:  # noqa: BLE001 - closing on the way out; nothing left to save
            pass

    def close(self) -> None:
        """Stop the workers; an embedded Ray stops with them, a cluster keeps running. Idempotent."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for actor in getattr(self, "slots", []):
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        self._shutdown()
