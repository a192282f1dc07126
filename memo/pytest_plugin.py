"""memo's pytest plugin: test suites that replay recorded answers, offline.

Installed with memo (a ``pytest11`` entry point) and idle until a project
opts in by naming a folder for its recordings in its pytest configuration::

    [tool.pytest.ini_options]
    memo_recordings = "tests/recordings"

Then, for each test module, memo's entries live in a store of their own,
loaded from the module's recording file (``tests/recordings/test_app.jsonl``
for ``tests/test_app.py``; a memo export, one entry a line, sorted, so it
diffs in review), and:

- ``pytest`` replays offline (``MEMO_OFFLINE=1`` for the run): a cached call
  that was recorded is answered from the file; one that was not fails its test
  with ``memo.NotRecordedError``, and no function runs, no request goes out.
- ``pytest --memo-record`` runs the calls missing from the files for real and
  adds them; what is recorded already is answered from the file. To record a
  module afresh (and drop what its tests no longer call), delete its file first.

Every cached function and ``memo.openai`` client whose entries live in a
folder (the default one, or ``directory=``) is pointed at the module's
recordings. One given ``store=`` keeps that store: its entries are neither
loaded nor recorded.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memo._context import NotRecordedError, is_offline
from memo._entries import default_store_replaced
from memo._transfer import ExportError, parse_export, read_export, write_export
from memo.stores.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Coroutine, Generator

__all__ = ["pytest_addoption", "pytest_configure"]

_INI = "memo_recordings"
_OPT_IN = 'memo_recordings = "tests/recordings" (under [tool.pytest.ini_options])'


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--memo-record`` and the ``memo_recordings`` setting."""
    group = parser.getgroup("memo", "memo: replay recorded answers")
    group.addoption(
        "--memo-record",
        action="store_true",
        default=False,
        help="run the cached calls missing from memo's recordings for real, and add them",
    )
    parser.addini(
        _INI,
        "folder of memo's recordings, one file per test module (e.g. tests/recordings); "
        "setting it turns memo's plugin on: tests replay them offline",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Turn the plugin on if the project named a recordings folder.

    Raises:
        pytest.UsageError: ``--memo-record`` without a recordings folder,
            with ``MEMO_OFFLINE=1`` set, or with pytest-xdist's ``-n``; a
            recording that is not an export.
    """
    setting = str(config.getini(_INI)).strip()
    record = bool(config.getoption("memo_record"))
    if not setting:
        if record:
            msg = f"--memo-record needs a folder for the recordings: set {_OPT_IN}"
            raise pytest.UsageError(msg)
        return
    try:
        offline = record and is_offline()
    except ValueError as exc:  # MEMO_OFFLINE misspelled
        raise pytest.UsageError(str(exc)) from None
    if offline:
        msg = "--memo-record runs calls for real, but MEMO_OFFLINE is set: unset it to record"
        raise pytest.UsageError(msg)
    # pytest-xdist's -n (also from addopts): workers sharing a module would
    # each write its file, and the last one would drop the others' calls.
    if record and (getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput")):
        msg = (
            "--memo-record runs without pytest-xdist: workers sharing a test module would "
            "each write its recording; add -n 0"
        )
        raise pytest.UsageError(msg)
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    # Every file checked before any test runs (and before MEMO_OFFLINE is
    # set): a damaged one stops the run here, in pytest-xdist's controller
    # too, where pytest.exit() in a worker would be an internal error that
    # loses the message.
    _check(base / setting, config.rootpath)
    recordings = Recordings(base / setting, record=record, root=config.rootpath)
    config.pluginmanager.register(recordings, "memo-recordings")
    config.add_cleanup(recordings.close)


class Recordings:
    """The plugin at work: each test module's recordings loaded, and written when recording.

    Args:
        folder: where the recording files are.
        record: True to run missing calls and write the files; False to replay offline.
        root: the run's root folder, which messages name paths from.
    """

    def __init__(self, folder: Path, *, record: bool, root: Path) -> None:
        self.folder = folder
        self.record = record
        self._root = root
        self._module: Path | None = None
        self._store: MemoryStore | None = None
        self._loaded = 0  # entries the module's file held
        self._added: dict[Path, int] = {}  # recording -> entries this run added
        self._scope = contextlib.ExitStack()
        # Between modules too (while pytest collects, a call at a test module's
        # import): a store of the run's own, so no call of the run is answered
        # from, or written to, the developer's cache folder. Such calls are in
        # no recording, and fail a replay on a laptop as they do in CI.
        self._outside = contextlib.ExitStack()
        self._outside.enter_context(default_store_replaced(_RecordingStore()))
        self._environment = os.environ.get("MEMO_OFFLINE")
        if not record:
            # An environment variable, not memo.offline(): it reaches every
            # task and thread of the run, and programs the tests start.
            os.environ["MEMO_OFFLINE"] = "1"

    def close(self) -> None:
        """Leave the last module, and give the folders and MEMO_OFFLINE back."""
        self._leave()
        self._outside.close()
        if not self.record:
            if self._environment is None:
                os.environ.pop("MEMO_OFFLINE", None)
            else:
                os.environ["MEMO_OFFLINE"] = self._environment

    def recording_of(self, module: Path) -> Path:
        """Return the recording file of a test module.

        The module's path below the recordings folder's parent (the tests
        folder), or else below the run's root folder (not the current one:
        the file must not depend on where pytest is started), with ``.jsonl``
        for ``.py``: ``tests/sub/test_x.py`` is ``tests/recordings/sub/test_x.jsonl``.
        """
        for base in (self.folder.parent, self._root):
            try:
                relative = module.resolve().relative_to(base.resolve())
                break
            except ValueError:
                continue
        else:
            relative = Path(module.name)
        return self.folder / relative.with_suffix(".jsonl")

    def _shown(self, path: Path) -> str:
        return os.path.relpath(path, self._root)

    def pytest_report_header(self) -> str:
        """Say what memo does with the recordings in this run."""
        if self.record:
            return f"memo: recording the calls missing from {self._shown(self.folder)}"
        return f"memo: replaying {self._shown(self.folder)} offline (record with --memo-record)"

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """Name the recordings this run added calls to: the files to commit."""
        for recording, added in self._added.items():
            calls = "call" if added == 1 else "calls"
            terminalreporter.write_line(
                f"memo: {added} {calls} recorded in {self._shown(recording)}"
            )

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Show a test that failed for want of a recording from its own code, naming the file."""
        excinfo = call.excinfo
        refused = excinfo is not None and excinfo.errisinstance(NotRecordedError)
        # memo's frames say nothing the message does not: hidden as pytest hides
        # its own (a module's __tracebackhide__), for this report only. The
        # frames' own globals, not sys.modules': a module dropped from it (as
        # pytester does between runs) still runs the functions it defined.
        frames = excinfo.traceback if excinfo is not None and refused else ()
        found = (entry.frame.f_globals for entry in frames)
        modules = list({id(g): g for g in found if _ours(str(g.get("__name__", "")))}.values())
        for namespace in modules:
            namespace["__tracebackhide__"] = _hide_from_refusals
        try:
            report = yield
        finally:
            for namespace in modules:
                namespace.pop("__tracebackhide__", None)
        if refused:
            recording = self._shown(self.recording_of(item.path))
            error = excinfo.value if excinfo is not None else None
            if isinstance(error, NotRecordedError) and error.why and error.key is not None:
                advice = f"unreadable in {recording} (edited by hand?): record it again with"
            else:
                advice = f"not in {recording}: record it with"
            report.sections.append(("memo", f"{advice} `pytest --memo-record`"))
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> Generator[None, object, object]:
        """Point memo at the item's module's recordings for its setup, call and teardown."""
        if item.path != self._module:
            self._leave()
            self._enter(item.path)
        try:
            return (yield)
        finally:
            # Module-scoped fixtures are torn down in the last item's teardown.
            if nextitem is None or nextitem.path != item.path:
                self._leave()

    def _enter(self, module: Path) -> None:
        store = _RecordingStore()
        recording = self.recording_of(module)
        if recording.exists():
            try:
                with recording.open("rb") as src:
                    _run(read_export(store, src, source=self._shown(recording)))
            except ExportError as exc:
                # Damaged since the run started (check() passed). Not one test's
                # failure: every test of the module would fail alike.
                pytest.exit(_damaged(exc), returncode=pytest.ExitCode.USAGE_ERROR)
        self._module, self._store, self._loaded = module, store, len(store)
        self._scope.enter_context(default_store_replaced(store))

    def _leave(self) -> None:
        module, store = self._module, self._store
        self._scope.close()
        self._module = self._store = None
        if not self.record or module is None or store is None or not len(store):
            return
        recording = self.recording_of(module)
        recording.parent.mkdir(parents=True, exist_ok=True)
        # Written beside it, then moved over it: a run stopped midway leaves
        # the previous recording whole.
        partial = recording.with_name(f".{recording.name}.partial")
        with partial.open("wb") as out:
            _run(write_export(store, out))
        partial.replace(recording)
        if len(store) > self._loaded:
            self._added[recording] = self._added.get(recording, 0) + len(store) - self._loaded


def _check(folder: Path, root: Path) -> None:
    """Raise pytest.UsageError naming a file of ``folder`` that is not a memo export."""
    for recording in sorted(folder.rglob("*.jsonl")) if folder.is_dir() else ():
        try:
            parse_export(recording.read_bytes(), source=os.path.relpath(recording, root))
        except ExportError as exc:
            raise pytest.UsageError(_damaged(exc)) from None


def _damaged(exc: ExportError) -> str:
    return f"{exc}; repair it (a merge conflict?) or delete it and record again"


def _ours(module: str) -> bool:
    return module == "memo" or module.startswith("memo.")


def _hide_from_refusals(excinfo: pytest.ExceptionInfo[BaseException]) -> bool:
    return excinfo.errisinstance(NotRecordedError)


class _RecordingStore(MemoryStore):
    """A module's recordings while its tests run; they never expire."""

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, without an expiry: a recording must not lapse."""
        del ttl
        await super().set(key, value)


def _run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    # In a thread of its own: the hooks may be called while the tests'
    # event loop is set (or running), which asyncio.run here would disturb.
    # Imported here: a project that has not opted in never pays for asyncio.
    import asyncio  # noqa: PLC0415
    import concurrent.futures  # noqa: PLC0415

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
