"""The runners of every target: one :class:`~tsf_adapter.pipeline.runner.TargetRunner` per target.

The daemon adds, starts, removes and stops runners by target name; a reload replaces a
changed target by removing and adding it, and the staleness state of what the old runner
wrote passes to the new one, so no forecast series is left hanging or ended twice.
"""

from __future__ import annotations

import asyncio

from tsf_adapter.config import TargetConfig
from tsf_adapter.core.series import Labels
from tsf_adapter.pipeline.output import ForecastOutput, StalenessTracker
from tsf_adapter.pipeline.runner import RunnerDeps, TargetRunner, log_failure


class Scheduler:
    """The runners of every target, started and stopped by name (a reload changes the set)."""

    def __init__(self, deps: RunnerDeps) -> None:
        self.deps = deps
        self.runners: dict[str, TargetRunner] = {}
        # What removed targets wrote last: taken over by a runner of the same name (a reload
        # replaces a changed target by removing and adding it) or ended by end_series().
        self._removed: dict[str, StalenessTracker] = {}

    def add(self, target: TargetConfig, *, load: bool = True) -> TargetRunner:
        """Create (and optionally load the saved state of) a target's runner, and hold it; not started."""
        return self.adopt(self.build(target, load=load))

    def build(self, target: TargetConfig, *, load: bool = True) -> TargetRunner:
        """A runner for ``target`` with its saved model and forecast memory loaded (``load``), not
        held yet: a reload builds every new runner before it changes anything (any thread)."""
        runner = TargetRunner(target, self.deps)
        if load:
            try:
                runner.load()
            except Exception as exc:  # a model file is a cache: never a reason not to run
                log_failure(f"target {target.name}: loading the saved model failed", exc)
            try:
                runner.load_memory()
            except Exception as exc:  # nor is the forecast memory
                log_failure(f"target {target.name}: loading the forecast memory failed", exc)
        return runner

    def adopt(self, runner: TargetRunner) -> TargetRunner:
        """Hold a built runner under its target's name, taking over what a removed runner of that
        name wrote (so it is neither left hanging nor ended twice). Event loop; not started."""
        written = self._removed.pop(runner.name, None)
        if written is not None and runner.builder.staleness is not None:
            runner.builder.staleness = written
        self.deps.metrics.add_target(runner.name)
        self.runners[runner.name] = runner
        return runner

    def start(self) -> None:
        for runner in self.runners.values():
            runner.start()

    async def remove(self, name: str) -> None:
        """Stop a target for good (removed or replaced by a reload); its training result is discarded."""
        runner = self.runners.pop(name, None)
        if runner is not None:
            await runner.stop(abort=True)
            self.deps.metrics.remove_target(name)
            if runner.builder.staleness is not None:
                self._removed[name] = runner.builder.staleness

    def end_series(self, name: str) -> list[Labels]:
        """Everything a removed target wrote last (sorted), for its final staleness markers; forgotten."""
        tracker = self._removed.pop(name, None)
        return [] if tracker is None else tracker.forget()

    def latest(self) -> list[ForecastOutput]:
        """The latest forecast of every running target that has made one."""
        return [r.latest for r in self.runners.values() if r.latest is not None]

    async def stop(self) -> None:
        """Daemon shutdown: running fits end early and save; every loop ends."""
        self.deps.stopping.set()
        await asyncio.gather(*(r.stop() for r in self.runners.values()))
