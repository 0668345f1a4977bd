"""Arrays of rows kept in files and read or written a batch of rows at a time, so host memory is bounded by the
batch rather than by the number of rows.

- `RowFile`: a `(rows, *row_shape)` array of one dtype at a byte offset in a file (a raw file of our own, or a tensor
  inside a safetensors file), indexed like a tensor: `f[idx]` reads rows with `os.pread`, `f[idx] = values` writes
  them with `os.pwrite`. Reads group consecutive rows into one call, so a video's T frames (consecutive rows) cost
  one read.
- `RowConcat`: several `RowFile`s (the shards of a latent cache) seen as one array, with an optional row selection.
- `UndoJournal`: before a journaled `RowFile` overwrites rows, their old bytes are appended to the journal; rolling
  it back restores every file to its state at the last `commit`. That is how a disk-backed run resumes
  bit-identically after a kill between two checkpoints.

Why not `numpy.memmap` / `torch.from_file`: pages of a shared mapping that a run has touched stay resident (and are
counted in its RSS) until the kernel is short of memory, so a pass over a large file looks like, and on a busy host
behaves like, holding the whole file. Explicit reads and writes keep exactly one batch in memory and let the page
cache do the rest. Durability: writes reach the file (and survive a kill of the process) when the call returns;
`flush` fsyncs them for a power loss as well.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence

import torch

#: safetensors dtype names -> torch dtypes.
SAFETENSORS_DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
}


def _as_index(idx, rows: int) -> torch.Tensor:
    """A 1-D int64 row index from an int, a slice, a list or a tensor (bool masks and negative ints allowed)."""
    if isinstance(idx, slice):
        return torch.arange(rows)[idx]
    if isinstance(idx, int):
        idx = torch.tensor([idx])
    idx = torch.as_tensor(idx)
    if idx.dtype == torch.bool:
        if idx.shape != (rows,):
            raise IndexError(f"boolean row mask of shape {tuple(idx.shape)} for {rows} rows")
        return torch.nonzero(idx).flatten()
    if idx.dim() != 1:
        raise IndexError(f"row index must be 1-D, got shape {tuple(idx.shape)}")
    idx = idx.to(torch.int64)
    idx = torch.where(idx < 0, idx + rows, idx)
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= rows):
        raise IndexError(f"row index out of range for {rows} rows: [{int(idx.min())}, {int(idx.max())}]")
    return idx


def _runs(sorted_rows: torch.Tensor) -> list[tuple[int, int]]:
    """`(first, count)` runs of consecutive rows in a sorted, distinct 1-D index."""
    if len(sorted_rows) == 0:
        return []
    breaks = torch.nonzero(sorted_rows[1:] - sorted_rows[:-1] != 1).flatten() + 1
    starts = [0, *breaks.tolist()]
    ends = [*breaks.tolist(), len(sorted_rows)]
    first = sorted_rows.tolist()
    return [(first[s], e - s) for s, e in zip(starts, ends)]


class RowFile:
    """A `(rows, *row_shape)` array of `dtype` stored at byte `offset` of `path`, read and written by rows.

    Indexing follows tensors for a leading row index (slice, list, 1-D int or bool tensor): `f[idx]` returns a new
    tensor `(len(idx), *row_shape)` (an int reads one row as `(1, *row_shape)`, unlike a tensor); `f[idx] = values` writes (values broadcast to the rows; the rows of one write
    must be distinct). `f[rows, cols]` with two index tensors reads single elements of the second axis (e.g. frame
    `cols[i]` of video `rows[i]`).

    Args:
        path: The file. `create=True` makes (or truncates) it to the array's size, zero-filled (sparse where the file
            system allows); otherwise it must already hold `offset + rows * row_bytes` bytes.
        rows, row_shape, dtype: The array's shape and dtype.
        offset: Byte offset of row 0.
        writable: Open for writing (`create` implies it).
        journal: An `UndoJournal` that saves overwritten rows first (see the module docstring), or None.

    Raises:
        ValueError: the file is shorter than the array, or a write's shape does not broadcast to the rows.
        IndexError: a row index is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        rows: int,
        row_shape: Sequence[int],
        dtype: torch.dtype,
        offset: int = 0,
        create: bool = False,
        writable: bool = False,
        journal: UndoJournal | None = None,
    ):
        self.path = os.fspath(path)
        self.rows, self.row_shape, self.dtype, self.offset = int(rows), tuple(int(s) for s in row_shape), dtype, offset
        self.row_bytes = torch.Size(self.row_shape).numel() * torch.empty((), dtype=dtype).element_size()
        self.nbytes = self.rows * self.row_bytes
        self.writable = writable or create
        if create:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "wb") as f:
                f.truncate(offset + self.nbytes)
        size = os.path.getsize(self.path)
        if size < offset + self.nbytes:
            raise ValueError(
                f"{self.path} holds {size:,} bytes, fewer than the {offset + self.nbytes:,} of a "
                f"{(self.rows, *self.row_shape)} {dtype} array at offset {offset}"
            )
        self.fd = os.open(self.path, os.O_RDWR if self.writable else os.O_RDONLY)
        self._owns_fd = True
        self.journal = journal
        if journal is not None:
            self.journal_id = journal.register(self)

    # -- tensor-like surface --------------------------------------------------------------------------------------

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.rows, *self.row_shape))

    def dim(self) -> int:
        return 1 + len(self.row_shape)

    def numel(self) -> int:
        return self.shape.numel()

    def element_size(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def __len__(self) -> int:
        return self.rows

    def __getstate__(self) -> dict:  # DataLoader workers: reopen the file rather than share the descriptor
        state = dict(self.__dict__)
        state.update(fd=None, _owns_fd=False, journal=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.fd = os.open(self.path, os.O_RDWR if self.writable else os.O_RDONLY)
        self._owns_fd = True

    def __repr__(self) -> str:
        return f"RowFile({self.path!r}, shape={tuple(self.shape)}, dtype={self.dtype})"

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError(f"RowFile takes a row index or (rows, columns), got {len(key)} indices")
            rows, cols = (torch.as_tensor(k, dtype=torch.int64) for k in key)
            rows, cols = torch.broadcast_tensors(rows, cols)
            per = self.row_shape[0] if self.row_shape else 0
            if not self.row_shape or (len(cols) and (int(cols.min()) < 0 or int(cols.max()) >= per)):
                raise IndexError(f"column index out of range for rows of shape {self.row_shape}")
            flat = self.as_rows_of(1)
            return flat.read((rows * per + cols).flatten()).view(*rows.shape, *self.row_shape[1:])
        return self.read(_as_index(key, self.rows))

    def __setitem__(self, key, values) -> None:
        idx = _as_index(key, self.rows)
        values = torch.as_tensor(values, dtype=self.dtype).expand(len(idx), *self.row_shape)
        self.write(idx, values)

    def as_rows_of(self, axes: int) -> RowFile:
        """The same bytes seen with the first `1 + axes` dimensions merged into rows (e.g. videos -> frames)."""
        if axes == 0:
            return self
        inner = self.row_shape[:axes]
        view = RowFile.__new__(RowFile)
        view.__dict__.update(self.__dict__)
        view.rows = self.rows * torch.Size(inner).numel()
        view.row_shape = self.row_shape[axes:]
        view.row_bytes = self.row_bytes // max(torch.Size(inner).numel(), 1)
        view.journal = None  # views read; writes go through the owner
        view.writable = False
        view._owns_fd = False  # the owner closes the file
        return view

    # -- reads and writes -----------------------------------------------------------------------------------------

    def _read_sorted(self, uniq: torch.Tensor) -> bytearray:
        buf = bytearray(len(uniq) * self.row_bytes)
        view = memoryview(buf)
        at = 0
        for first, count in _runs(uniq):
            n = count * self.row_bytes
            got = os.preadv(self.fd, [view[at : at + n]], self.offset + first * self.row_bytes)
            if got != n:
                raise OSError(f"{self.path}: short read of rows {first}..{first + count - 1} ({got} of {n} bytes)")
            at += n
        return buf

    def read(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows `idx` (1-D int64, any order, repeats allowed) as a new `(len(idx), *row_shape)` tensor."""
        if len(idx) == 0:
            return torch.empty((0, *self.row_shape), dtype=self.dtype)
        uniq, inverse = torch.unique(idx, sorted=True, return_inverse=True)
        buf = self._read_sorted(uniq)
        out = torch.frombuffer(buf, dtype=self.dtype).view(len(uniq), *self.row_shape)
        if len(uniq) == len(idx) and torch.equal(uniq, idx):
            return out
        return out[inverse]

    def write(self, idx: torch.Tensor, values: torch.Tensor) -> None:
        """Write `values` `(len(idx), *row_shape)` to distinct rows `idx`; the journal saves the old rows first."""
        if not self.writable:
            raise PermissionError(f"{self.path} was opened read-only")
        if len(idx) == 0:
            return
        if tuple(values.shape) != (len(idx), *self.row_shape):
            raise ValueError(
                f"{self.path}: values of shape {tuple(values.shape)} for {len(idx)} rows of {self.row_shape}"
            )
        order = torch.argsort(idx)
        uniq = idx[order]
        if len(uniq) > 1 and bool((uniq[1:] == uniq[:-1]).any()):
            raise ValueError(f"{self.path}: a write's rows must be distinct")
        if self.journal is not None:
            self.journal.save(self, uniq, self._read_sorted(uniq))
        data = values[order].to(self.dtype).contiguous().view(-1).view(torch.uint8).numpy()
        view = memoryview(data)
        at = 0
        for first, count in _runs(uniq):
            n = count * self.row_bytes
            self._pwrite_all(view[at : at + n], self.offset + first * self.row_bytes)
            at += n

    def _pwrite_all(self, data: memoryview, offset: int) -> None:
        while len(data):
            n = os.pwrite(self.fd, data, offset)
            data, offset = data[n:], offset + n

    def read_all(self) -> torch.Tensor:
        """Every row as one tensor (what the caller asked to hold in memory)."""
        return self.read(torch.arange(self.rows))

    def flush(self) -> None:
        """fsync the file (writes already survive a kill of the process; this makes them survive a power loss)."""
        if self.writable:
            os.fsync(self.fd)

    def close(self) -> None:
        if getattr(self, "fd", None) is not None and self._owns_fd:
            os.close(self.fd)
        self.fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def in_memory(array) -> torch.Tensor:
    """A lazy row array (`RowFile`, `RowConcat`) read whole into a tensor; a tensor as it is."""
    return array if isinstance(array, torch.Tensor) else array.read_all()


def safetensors_rows(path: str | os.PathLike, name: str) -> RowFile:
    """Tensor `name` of safetensors file `path` as a read-only `RowFile` over its first axis (no data is read).

    Raises:
        KeyError: the file has no tensor `name`.
        ValueError: the header is not a safetensors header, or its dtype is unknown.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path} is not a safetensors file (shorter than its 8-byte header length)")
        (length,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(length))
        except ValueError as err:
            raise ValueError(f"{path} is not a safetensors file: its header is not JSON ({err})") from err
    if name not in header:
        raise KeyError(f"{path} has no tensor {name!r}; it has {sorted(k for k in header if k != '__metadata__')}")
    entry = header[name]
    if entry["dtype"] not in SAFETENSORS_DTYPES:
        raise ValueError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, which rows.py cannot read")
    shape = entry["shape"]
    return RowFile(
        path, shape[0], shape[1:], SAFETENSORS_DTYPES[entry["dtype"]], offset=8 + length + entry["data_offsets"][0]
    )


class SafetensorsRowWriter:
    """Write a safetensors file whose first tensor grows a batch of rows at a time, never held whole in memory.

    Rows go straight to disk after room reserved for the header; `finish` appends small tensors (labels), writes the
    header (padded with spaces, which the format allows, so the data stays 8-byte aligned) and renames the file into
    place atomically. `safetensors.torch.load_file` and `safetensors_rows` read the result.
    """

    RESERVE = 8192  # bytes for the 8-byte length and the JSON header

    def __init__(self, path: str | os.PathLike, name: str, row_shape: Sequence[int], dtype: torch.dtype):
        self.path, self.name = os.fspath(path), name
        self.row_shape, self.dtype = tuple(int(s) for s in row_shape), dtype
        self.rows = 0
        self.tmp = f"{self.path}.tmp.{os.getpid()}"
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self.f = open(self.tmp, "wb")
        self.f.seek(self.RESERVE)

    def append(self, rows: torch.Tensor) -> None:
        """Append `(n, *row_shape)` rows."""
        if tuple(rows.shape[1:]) != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {tuple(rows.shape[1:])}, expected {self.row_shape}")
        self.f.write(rows.to(self.dtype).contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        self.rows += len(rows)

    def finish(self, extra: dict[str, torch.Tensor] | None = None, metadata: dict[str, str] | None = None) -> None:
        names = {v: k for k, v in SAFETENSORS_DTYPES.items()}
        row_bytes = torch.Size(self.row_shape).numel() * torch.empty((), dtype=self.dtype).element_size()
        end = self.rows * row_bytes
        header: dict = {
            self.name: {"dtype": names[self.dtype], "shape": [self.rows, *self.row_shape], "data_offsets": [0, end]}
        }
        for key, t in (extra or {}).items():
            data = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
            header[key] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [end, end + len(data)]}
            self.f.write(data)
            end += len(data)
        if metadata:
            header["__metadata__"] = metadata
        text = json.dumps(header, separators=(",", ":")).encode()
        if len(text) > self.RESERVE - 8:
            raise ValueError(f"{self.path}: header of {len(text)} bytes does not fit the {self.RESERVE - 8} reserved")
        self.f.seek(0)
        self.f.write(struct.pack("<Q", self.RESERVE - 8) + text.ljust(self.RESERVE - 8, b" "))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.f.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


class RowConcat:
    """Several `RowFile`s with the same row shape and dtype seen as one array, optionally through a row selection.

    `RowConcat(parts)[i]` is row `i` of the parts laid end to end; `RowConcat(parts, rows=sel)[i]` is row `sel[i]` of
    that. Indexing as for `RowFile` (reads only). Used for a latent cache's shards (`LatentCache.latents`).
    """

    def __init__(self, parts: Sequence[RowFile], rows: torch.Tensor | None = None):
        if not parts:
            raise ValueError("RowConcat needs at least one part")
        first = parts[0]
        for p in parts:
            if p.row_shape != first.row_shape or p.dtype != first.dtype:
                raise ValueError(f"{p.path}: rows {p.row_shape} {p.dtype}, expected {first.row_shape} {first.dtype}")
        self.parts = list(parts)
        self.row_shape, self.dtype = first.row_shape, first.dtype
        self.starts = torch.tensor([0, *torch.tensor([len(p) for p in parts]).cumsum(0).tolist()])
        total = int(self.starts[-1])
        self.selection = None if rows is None else _as_index(rows, total)
        self.rows = total if rows is None else len(self.selection)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.rows, *self.row_shape))

    def dim(self) -> int:
        return 1 + len(self.row_shape)

    def __len__(self) -> int:
        return self.rows

    def select(self, rows) -> RowConcat:
        """A lazy view of rows `rows` of this array (nothing is read)."""
        idx = _as_index(rows, self.rows)
        return RowConcat(self.parts, idx if self.selection is None else self.selection[idx])

    def _locate(self, global_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        part = torch.searchsorted(self.starts, global_rows, right=True) - 1
        return part, global_rows - self.starts[part]

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, tuple):
            if len(key) != 2:
                raise IndexError(f"RowConcat takes a row index or (rows, columns), got {len(key)} indices")
            rows, cols = torch.broadcast_tensors(*(torch.as_tensor(k, dtype=torch.int64) for k in key))
            return self._gather(rows.flatten(), cols.flatten()).view(*rows.shape, *self.row_shape[1:])
        return self._gather(_as_index(key, self.rows), None)

    def _gather(self, rows: torch.Tensor, cols: torch.Tensor | None) -> torch.Tensor:
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= self.rows):
            raise IndexError(f"row index out of range for {self.rows} rows")
        global_rows = rows if self.selection is None else self.selection[rows]
        part, local = self._locate(global_rows)
        shape = self.row_shape if cols is None else self.row_shape[1:]
        out = torch.empty((len(rows), *shape), dtype=self.dtype)
        for p in part.unique().tolist():
            at = torch.nonzero(part == p).flatten()
            src = self.parts[p]
            out[at] = src.read(local[at]) if cols is None else src[local[at], cols[at]]
        return out

    def read_all(self) -> torch.Tensor:
        return self[torch.arange(self.rows)]


class UndoJournal:
    """A rollback journal for `RowFile`s: rows are saved here before they are overwritten, and `rollback` puts them
    back, returning every registered file to its bytes at the last `commit`.

    File layout: an 8-byte generation number, then records `(file id: u32, rows: u64, row bytes: u64, rows' int64
    indices, their old bytes)`. A record is written whole before the rows it saves are overwritten, so a kill leaves
    at most a truncated last record whose rows were never touched; `rollback` ignores it. Records are applied newest
    first, so a row saved several times ends with its oldest (committed) bytes. The journal grows with the bytes
    written between two commits (on disk), not with the array.

    A checkpoint is: `flush` the files, write the small state (recording `generation + 1`) atomically, then
    `commit(generation + 1)`. On resume, `rollback(generation)` applies the journal only when its generation is the
    state's: a kill between writing the state and `commit` leaves the old generation's journal, which must then be
    discarded, not applied.
    """

    HEADER = struct.Struct("<IQQ")

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.files: list[RowFile] = []
        exists = os.path.exists(self.path)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        if not exists or os.path.getsize(self.path) < 8:
            self._reset(0)

    def register(self, row_file: RowFile) -> int:
        self.files.append(row_file)
        return len(self.files) - 1

    @property
    def generation(self) -> int:
        (gen,) = struct.unpack("<Q", os.pread(self.fd, 8, 0))
        return gen

    def _reset(self, generation: int) -> None:
        os.ftruncate(self.fd, 0)
        os.write(self.fd, struct.pack("<Q", generation))
        os.fsync(self.fd)

    def save(self, row_file: RowFile, rows: torch.Tensor, old: bytearray) -> None:
        record = self.HEADER.pack(row_file.journal_id, len(rows), row_file.row_bytes)
        record += rows.to(torch.int64).numpy().tobytes() + bytes(old)
        view = memoryview(record)
        while len(view):  # O_APPEND: each write lands at the end
            view = view[os.write(self.fd, view) :]

    def commit(self, generation: int) -> None:
        """Forget the saved rows: the files' current bytes are the new committed state, `generation`."""
        self._reset(generation)

    def rollback(self, generation: int) -> int:
        """Restore the registered files to their committed bytes when the journal belongs to `generation` (else
        discard it); then commit `generation`. Returns the number of rows restored."""
        size = os.path.getsize(self.path)
        restored = 0
        if self.generation == generation:
            records, at = [], 8
            while at + self.HEADER.size <= size:
                file_id, count, row_bytes = self.HEADER.unpack(os.pread(self.fd, self.HEADER.size, at))
                body = count * 8 + count * row_bytes
                if at + self.HEADER.size + body > size:
                    break  # the record a kill cut short: its rows were never overwritten
                records.append((file_id, count, row_bytes, at + self.HEADER.size))
                at += self.HEADER.size + body
            for file_id, count, row_bytes, start in reversed(records):
                target = self.files[file_id]
                if row_bytes != target.row_bytes:
                    raise ValueError(f"{self.path}: a record for {target.path} has rows of {row_bytes} bytes")
                rows = torch.frombuffer(bytearray(os.pread(self.fd, count * 8, start)), dtype=torch.int64)
                old = memoryview(os.pread(self.fd, count * row_bytes, start + count * 8))
                at = 0
                for first, n in _runs(rows):
                    target._pwrite_all(old[at : at + n * row_bytes], target.offset + first * row_bytes)
                    at += n * row_bytes
                restored += count
            for f in self.files:
                f.flush()
        self.commit(generation)
        return restored

    def close(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
