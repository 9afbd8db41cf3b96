"""Shard files: a study's per-example scores, appended batch by batch, resumable and mergeable.

One JSON-lines file per rank, ``shard-<rank>-of-<world>.jsonl``: a header line (format version,
the scoring config, a hash of the dataset and of the model, the methods and layers), then one
line per scored batch (its index in the rank's batch plan and every example's scores, keyed by
id), flushed as it is written, then a footer line (examples scored, seconds) when the rank is
done. A line cut by a crash is detected on reading (no newline or no valid JSON at the end) and
dropped, so a resumed run recomputes exactly the batches that are missing — with the same batch
composition, hence the same numbers. :func:`merge_shards` checks that the shards belong to one
run (naming the field that differs) and rebuilds one :class:`ScoreTable`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnlens._checks import ArgumentError
from attnlens.experiments.score_table import METRICS, ScoreTable

FORMAT = "attnlens-shard/1"
_NAME = re.compile(r"shard-(\d{5})-of-(\d{5})\.jsonl$")
HEADER_FIELDS = ("config", "data_hash", "model_hash", "methods", "num_layers")  # must agree to merge


@dataclass(frozen=True)
class ShardSpec:
    """Which part of the examples a process scores: every `count`-th example from `index` on.

    Example:
        >>> ShardSpec.parse("1/4")
        ShardSpec(index=1, count=4)
        >>> ShardSpec(1, 4).positions(10)
        [1, 5, 9]
    """

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str, argument: str = "shard") -> ShardSpec:
        """``"i/N"`` with 0 ≤ i < N.

        Raises:
            ArgumentError: naming `argument` on any other text.
        """
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
            raise ArgumentError(f"Expected `{argument}` to be i/N with 0 <= i < N (for example 0/4), but got "
                                f"{text!r}.", argument)
        return cls(int(match.group(1)), int(match.group(2)))

    def positions(self, total: int) -> list[int]:
        """The positions (in source order) of this shard's examples: strided, so it never depends on timing."""
        return list(range(self.index, total, self.count))

    @property
    def file_name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}.jsonl"


def data_hash(examples) -> str:
    """SHA-256 of every example's id, text and label, in source order."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.id, example.index, example.text, example.label]).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def model_hash(model) -> str:
    """SHA-256 of a model's class, config and every parameter and buffer (names, shapes, bytes)."""
    import torch  # noqa: PLC0415

    digest = hashlib.sha256(type(model).__name__.encode("utf-8"))
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode("utf-8"))
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _rows(table: ScoreTable) -> list[dict]:
    """One JSON-ready record per example of `table`."""
    return [{"id": table.ids[i], "index": int(table.index[i]), "text": table.texts[i], "label": int(table.labels[i]),
             "prediction": int(table.predictions[i]), "tokens": int(table.tokens[i]),
             **{name: table.scores[name][i].tolist() for name in METRICS},
             "layers_used": table.layers_used[i].tolist()} for i in range(table.num_examples)]


def table_from_rows(rows: Sequence[dict], *, methods: list[str], families: dict[str, str], num_layers: int,
                    meta: dict | None = None, timings: dict | None = None) -> ScoreTable:
    """Rebuild a :class:`ScoreTable` from shard records (the inverse of what a shard stores)."""
    count = len(methods)
    scores = {name: np.asarray([r[name] for r in rows], dtype=np.float64).reshape(len(rows), count, num_layers)
              for name in METRICS}
    return ScoreTable(
        methods=list(methods), families=dict(families), num_layers=num_layers, ids=[r["id"] for r in rows],
        index=np.asarray([r["index"] for r in rows], dtype=np.int64), texts=[r["text"] for r in rows],
        labels=np.asarray([r["label"] for r in rows], dtype=np.int64),
        predictions=np.asarray([r["prediction"] for r in rows], dtype=np.int64),
        tokens=np.asarray([r["tokens"] for r in rows], dtype=np.int64), scores=scores,
        layers_used=np.asarray([r["layers_used"] for r in rows], dtype=np.float64).reshape(len(rows), count),
        meta=dict(meta or {}), timings=dict(timings or {}))


@dataclass
class Shard:
    """What a shard file holds.

    Attributes:
        path: the file.
        header: the header record.
        batches: batch index → its example records, for every complete batch line.
        footer: the footer record when the rank finished, else None.
        valid_bytes: length of the header and batch lines: a footer and a cut last line lie
            beyond it (a resumed run truncates the file there and appends).
    """

    path: Path
    header: dict
    batches: dict[int, list[dict]] = field(default_factory=dict)
    footer: dict | None = None
    valid_bytes: int = 0

    @property
    def examples_done(self) -> int:
        return sum(len(rows) for rows in self.batches.values())

    def table(self) -> ScoreTable:
        """The shard's examples as a :class:`ScoreTable`."""
        rows = [row for index in sorted(self.batches) for row in self.batches[index]]
        header = self.header
        timings = {"model": 0.0, "methods": 0.0} if self.footer is None else dict(self.footer.get("timings", {}))
        return table_from_rows(rows, methods=header["methods"], families=header["families"],
                               num_layers=header["num_layers"], meta=header.get("meta"), timings=timings)


def read_shard(path: str | os.PathLike) -> Shard:
    """Read a shard file; a cut last line (from a killed run) is dropped.

    Raises:
        ValueError: when the file is not a shard, or a line other than the last is corrupt.
    """
    path = Path(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]  # `tail` is b"" when the file ends with a newline
    records: list[tuple[dict, int]] = []  # each record with the offset where its line ends
    offset = 0
    for number, line in enumerate(complete, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(complete) and not tail:  # the last line, cut before its end: dropped
                break
            raise ValueError(f"Expected every line of shard {path} to be JSON, but line {number} is not.") from None
        offset += len(line) + 1
        records.append((record, offset))
    if not records or records[0][0].get("format") != FORMAT:
        raise ValueError(f"Expected {path} to be an attnlens shard ({FORMAT}), but its first line is not a header.")
    shard = Shard(path=path, header=records[0][0], valid_bytes=records[0][1])
    for record, end in records[1:]:
        if "batch" in record:
            shard.batches[int(record["batch"])] = record["examples"]
            shard.valid_bytes = end
        elif record.get("done"):
            shard.footer = record
    return shard


class ShardWriter:
    """Appends one rank's batches to its shard file, resuming what an earlier run left.

    Args:
        path: the shard file.
        header: the header record (written when the file is new, compared when resuming).
        resume: continue an existing file; without it an existing non-empty file is an error.

    Raises:
        ArgumentError: naming `resume` when the file exists and `resume` is off, or when it
            belongs to another run (naming the header field that differs).
    """

    def __init__(self, path: str | os.PathLike, header: dict, *, resume: bool = False) -> None:
        self.path = Path(path)
        self.header = {"format": FORMAT, **header}
        self.done: dict[int, list[dict]] = {}
        self.started = time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise ArgumentError(f"Expected no shard at {self.path} (a run with the same `out` left it); pass "
                                    f"`resume` to continue it, or choose another output folder.", "resume")
            shard = read_shard(self.path)
            _check_same_run(shard.header, self.header, str(self.path))
            with self.path.open("r+b") as handle:
                handle.truncate(shard.valid_bytes)  # drop a half-written last line, and the footer of a finished shard
            self.done = shard.batches
            self._handle = self.path.open("a", encoding="utf-8")
        else:
            self._handle = self.path.open("w", encoding="utf-8")
            self._write(self.header)

    def _write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, allow_nan=True) + "\n")
        self._handle.flush()

    def write_batch(self, batch: int, table: ScoreTable) -> None:
        """Append one batch's examples (one line, flushed)."""
        rows = _rows(table)
        self.done[batch] = rows
        self._write({"batch": batch, "examples": rows})

    def finish(self, timings: dict[str, float]) -> None:
        """Write the footer (examples, seconds, timings) and close the file."""
        examples = sum(len(rows) for rows in self.done.values())
        self._write({"done": True, "examples": examples, "seconds": time.perf_counter() - self.started,
                     "timings": timings})
        self._handle.close()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


def _check_same_run(found: dict, expected: dict, where: str) -> None:
    for name in HEADER_FIELDS:
        if found.get(name) != expected.get(name):
            raise ArgumentError(f"Expected the shards to come from one run, but {where} differs in `{name}` "
                                f"({_short(found.get(name))} vs {_short(expected.get(name))}).", name)


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def shard_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Shard files named by `paths`: files themselves, or every ``shard-*.jsonl`` in a folder.

    Raises:
        ArgumentError: naming `shards` when a path is missing or a folder holds no shard.
    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _NAME.search(p.name))
            if not files:
                raise ArgumentError(f"Expected `shards` folder {path} to hold shard-*-of-*.jsonl files, but it holds "
                                    f"none.", "shards")
            found.extend(files)
        elif path.is_file():
            found.append(path)
        else:
            raise ArgumentError(f"Expected every entry of `shards` to be a shard file or folder, but {path} does not "
                                f"exist.", "shards")
    return found


def merge_shards(paths: Iterable[str | os.PathLike], *, require_complete: bool = True) -> tuple[ScoreTable, dict,
                                                                                                list[dict]]:
    """Merge the shards of one run into one table.

    Args:
        paths: shard files or folders holding them.
        require_complete: refuse unfinished shards and missing ranks.

    Returns:
        The merged :class:`ScoreTable` (source order), the first header, and per-rank statistics
        (rank, examples, seconds, examples per second).

    Raises:
        ArgumentError: on shards of different runs (naming the header field that differs),
            repeated or missing ranks, or unfinished shards.
    """
    shards = [read_shard(path) for path in shard_files(paths)]
    first = shards[0].header
    for shard in shards[1:]:
        _check_same_run(shard.header, first, str(shard.path))
    ranks = [(s.header["rank"], s.header["world"]) for s in shards]
    if len(set(ranks)) != len(ranks):
        raise ArgumentError(f"Expected each rank's shard once, but got ranks {sorted(ranks)}.", "shards")
    worlds = {world for _, world in ranks}
    if require_complete:
        if len(worlds) != 1 or len(ranks) != next(iter(worlds)):
            missing = sorted({(r, w) for w in worlds for r in range(w)} - set(ranks))
            raise ArgumentError(f"Expected every shard of the run, but these rank/world shards are missing: "
                                f"{', '.join(f'{r}/{w}' for r, w in missing) or 'mixed world sizes'}.", "shards")
        unfinished = [str(s.path) for s in shards if s.footer is None]
        if unfinished:
            raise ArgumentError(f"Expected finished shards, but {', '.join(unfinished)} has no footer (its run stopped "
                                f"early; rerun it with --resume).", "shards")
    table = ScoreTable.concat([shard.table() for shard in shards])
    ranks_info = [{"rank": s.header["rank"], "examples": s.examples_done,
                   "seconds": None if s.footer is None else s.footer["seconds"],
                   "examples_per_second": None if s.footer is None or not s.footer["seconds"] else
                   s.examples_done / s.footer["seconds"]} for s in shards]
    return table, first, sorted(ranks_info, key=lambda r: r["rank"])


class ShardProgress:
    """Examples done over the shards of a folder (all but `exclude`), read incrementally from the files
    (for rank 0's bar)."""

    def __init__(self, folder: Path, world: int, *, exclude: int | None = None) -> None:
        self.folder, self.world, self.exclude = folder, world, exclude
        self._offsets: dict[Path, int] = {}
        self._counts: dict[Path, int] = {}
        self._finished: set[Path] = set()

    def poll(self) -> tuple[int, int]:
        """(examples done, shards finished) over all shards found so far."""
        for index in range(self.world):
            if index == self.exclude:
                continue
            path = self.folder / ShardSpec(index, self.world).file_name
            if not path.exists() or path in self._finished:
                continue
            with path.open("rb") as handle:
                handle.seek(self._offsets.get(path, 0))
                chunk = handle.read()
            end = chunk.rfind(b"\n") + 1
            for line in chunk[:end].splitlines():
                if line.startswith(b'{"batch"'):
                    self._counts[path] = self._counts.get(path, 0) + line.count(b'"id": ')
                elif line.startswith(b'{"done"'):
                    self._finished.add(path)
            self._offsets[path] = self._offsets.get(path, 0) + end
        return sum(self._counts.values()), len(self._finished)


__all__ = [
    "FORMAT",
    "Shard",
    "ShardProgress",
    "ShardSpec",
    "ShardWriter",
    "data_hash",
    "merge_shards",
    "model_hash",
    "read_shard",
    "shard_files",
    "table_from_rows",
]
