"""A cache of finished scan runs, keyed per run.

:class:`LearningRateScan` computes one key per run from fingerprints taken
once per scan (the data, the analysis options, each configuration of the
estimator) and the run's own seed and learning rate, so a refined or extended
grid finds every run it already has, whatever block or position the run had
before.  Runs are stored in blocks (one file per block of runs that finished
together: a million-run scan is a few hundred files, not a million), each a
pickle of its records beside a small file of its keys, written atomically
(temporary file, then rename; the keys file last): a scan killed mid-block
loses that block only, and a concurrent reader sees a block whole or not at
all.
"""

import hashlib
import os
import pickle
import uuid
import warnings
from pathlib import Path

import joblib
import numpy as np
from joblib.memory import CacheWarning

from ._version import __version__

__all__ = ["RunStore", "fingerprint", "run_key"]

# Bumped when what a stored run means changes (a new result column, a fix of
# a computed number): older entries are then not found.
_FORMAT = 2


def _hashable(value):
    """``value`` with objects that hash unstably replaced by their content.

    A torch module pickles its tensors' storage with their memory address as
    key, so ``joblib.hash`` of two equal modules differs: it is replaced by
    its class, its ``repr`` and its state (arrays).  Estimators are replaced
    by their class and parameters, recursively.
    """
    if hasattr(value, "get_params") and not isinstance(value, type):
        params = value.get_params(deep=False)
        return (type(value).__qualname__, {k: _hashable(v) for k, v in params.items()})
    if hasattr(value, "state_dict") and callable(value.state_dict):
        state = {
            k: v.detach().cpu().numpy() if hasattr(v, "detach") else v
            for k, v in value.state_dict().items()
        }
        return (type(value).__qualname__, repr(value), state)
    if isinstance(value, dict):
        return {k: _hashable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_hashable(v) for v in value)
    return value


def fingerprint(*objects):
    """A stable hex digest of ``objects`` (arrays, estimators, torch modules)."""
    return joblib.hash((_FORMAT, __version__, _hashable(objects)))


def run_key(*parts):
    """The key of one run: a fast digest of already fingerprinted parts.

    Learning rates enter as ``float.hex`` (exact), seeds and digests as text.
    """
    text = "|".join(p.hex() if isinstance(p, float) else str(p) for p in parts)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class RunStore:
    """Blocks of finished runs in a directory, looked up by run key.

    Parameters
    ----------
    location : path-like
        The cache directory (``memory``); runs go to its ``sharpsk-runs``
        sub-directory.

    Notes
    -----
    A block is any picklable dict of per-run data (arrays over its runs).
    Unreadable blocks (truncated, garbage, another format) are removed with one
    :class:`joblib.memory.CacheWarning` and their runs recomputed; a block that
    cannot be written (full disk, read-only directory) stops the caching of
    that scan with one ``CacheWarning``; the scan goes on.
    """

    def __init__(self, location):
        self.path = Path(location) / "sharpsk-runs"
        self._index = None  # key -> block name
        self._unwritable = False

    @classmethod
    def from_memory(cls, memory):
        """The store of a scan's ``memory`` (None: nothing is cached)."""
        if memory is None:
            return None
        if isinstance(memory, (str, os.PathLike)):
            return cls(memory)
        location = getattr(memory, "location", None)
        if location is None:
            if not hasattr(memory, "location"):
                raise TypeError(
                    "memory: runs are cached in a directory, so memory must be a "
                    "path or a joblib.Memory with a location; got "
                    f"{type(memory).__name__} without a location attribute."
                )
            return None  # joblib.Memory(None): caching off
        return cls(location)

    def _read_index(self):
        index = {}
        if self.path.is_dir():
            for keys_file in sorted(self.path.glob("*.keys.npy")):
                name = keys_file.name[: -len(".keys.npy")]
                try:
                    keys = np.load(keys_file, allow_pickle=False)
                except Exception as exc:  # truncated, garbage
                    self._drop(name, exc)
                    continue
                index.update(dict.fromkeys(keys.tolist(), name))
        return index

    def _drop(self, name, exc):
        for suffix in (".keys.npy", ".pkl"):
            (self.path / f"{name}{suffix}").unlink(missing_ok=True)
        warnings.warn(
            f"memory: a corrupt cache entry ({type(exc).__name__}) was removed and "
            "its runs recomputed.",
            CacheWarning,
            stacklevel=4,
        )

    def load(self, keys):
        """The stored runs among ``keys``: a dict ``key -> (block, row)``.

        ``block`` is the stored block (loaded once however many of its runs
        are wanted) and ``row`` the run's position in it.
        """
        if self._index is None:
            self._index = self._read_index()
        wanted = {}
        for key in keys:
            name = self._index.get(key)
            if name is not None:
                wanted.setdefault(name, []).append(key)
        found = {}
        for name, block_keys in wanted.items():
            try:
                with open(self.path / f"{name}.pkl", "rb") as fh:
                    stored_keys, block = pickle.load(fh)
                rows = {k: r for r, k in enumerate(stored_keys)}
                found.update((k, (block, rows[k])) for k in block_keys)
            except Exception as exc:  # unreadable, or a key missing from it
                self._drop(name, exc)
                for k in block_keys:
                    found.pop(k, None)
                self._index = {k: v for k, v in self._index.items() if v != name}
        return found

    def save(self, keys, block):
        """Store ``block`` (a dict of per-run data, rows in the order of
        ``keys``) under the run keys ``keys``."""
        keys = list(keys)
        if not keys or self._unwritable:
            return
        name = uuid.uuid4().hex
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._write(
                f"{name}.pkl", lambda fh: pickle.dump((keys, block), fh, protocol=5)
            )
            index = np.array(keys, dtype="U32")
            self._write(f"{name}.keys.npy", lambda fh: np.save(fh, index))
        except OSError as exc:
            (self.path / f"{name}.pkl").unlink(missing_ok=True)
            self._unwritable = True  # one warning, not one per block
            warnings.warn(
                f"memory: Unable to cache runs in {self.path} ({exc}); the scan "
                "goes on without caching.",
                CacheWarning,
                stacklevel=3,
            )
            return
        if self._index is not None:
            self._index.update(dict.fromkeys(keys, name))

    def _write(self, filename, dump):
        tmp = self.path / f".{filename}.{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "wb") as fh:
                dump(fh)
            os.replace(tmp, self.path / filename)
        finally:
            tmp.unlink(missing_ok=True)
