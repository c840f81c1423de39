"""Corpus ids in canonical order, and the texts streamed from the source in that order, chunk by chunk.

The canonical order is ids descending (exact search breaks score ties by the lower row, so this order
breaks them the way trec_eval does: docno descending). Ids are kept as one numpy array: ASCII bytes when every
id is ASCII (MS MARCO: 7 bytes a passage instead of numpy unicode's 28), unicode otherwise. Both compare code
points, as Python's ``sorted`` does, so the order is bit-identical to sorting the strings; `as_strings` turns
either into Python strings. No text is held: each source gets a byte-offset index (offset and length of every
document's line, in canonical order) and a chunk is read with one ``pread`` per document, in file order. A saved
index's offsets and lengths stay on disk: each read maps their files for the rows it needs, so memory does not
grow with the corpus by their 12 bytes a document.

* plain ``corpus.jsonl`` / ``collection.tsv``: the index points into the file itself;
* ``corpus.jsonl.gz`` and ``ir_datasets`` sources cannot be read at an offset: one pass writes their documents
  into a plain "spill" file next to the index (disk: about the corpus size) and the index points there.

The index is built by one pass over the source and, when a cache directory is given, saved under
``<cache>/corpus-index/<key>`` (the key names the source file, its size and mtime), so later runs read the ids
with one ``np.load``. Without a cache directory plain files keep the index in memory and gzip / ir_datasets
sources hold their texts in memory (`MemoryCorpus`: small sets, the in-memory API).

The index is not trusted blindly: meta.json holds a sha256 of its ids, offsets and lengths, checked at load (a
damaged index is removed and built again, with a warning naming it), and every text read checks that the line
read holds the id the index gives its row (a mismatch removes the index and stops with a HarnessError: the
embeddings of the rows already read cannot be trusted, so the run has to start again).

Ids are refused where they enter when the TREC run and qrels formats cannot carry them (`check_id`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import numpy as np

from harness.vocabulary.digest import file_sha256
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.npy import write_npy

log = logging.getLogger(__name__)

INDEX_VERSION = 2  # 2: meta.json holds the checksum of the index columns
READ_ROWS = 16384  # documents per read when streaming the whole corpus
_ID_BLOCK = 1 << 20  # ids gathered as Python strings before packing into numpy


class Corpus:
    """Document ids in canonical order; texts read on demand. Subclasses implement `texts_at`."""

    ids: np.ndarray  # ids descending: ASCII bytes (dtype S) or unicode (U); see `as_strings`

    def __len__(self) -> int:
        return len(self.ids)

    def texts_at(self, rows: np.ndarray) -> list[str]:
        raise NotImplementedError

    def texts(self, start: int, stop: int) -> list[str]:
        """The texts of canonical rows [start, stop)."""
        return self.texts_at(np.arange(start, min(stop, len(self)), dtype=np.int64))

    def chunks(self, rows: int = READ_ROWS) -> Iterator[tuple[int, list[str]]]:
        """(first row, texts) of consecutive canonical chunks of at most `rows` documents."""
        for start in range(0, len(self), rows):
            yield start, self.texts(start, start + rows)

    def rows_of(self, doc_ids: Iterable[str]) -> dict[str, int]:
        """Canonical row of each of `doc_ids` found in the corpus (absent ids are left out)."""
        # Not cast to the corpus's dtype: numpy would cut a longer id to the corpus's width ("12345678" would be
        # found as "1234567"). Arrays of different widths compare exactly.
        names = sorted(set(doc_ids))
        if self.ids.dtype.kind == "S":  # a non-ASCII id cannot be among ASCII ones
            wanted = np.asarray([d.encode() for d in names if d.isascii()], dtype=bytes)
        else:
            wanted = np.asarray(names, dtype=str)
        if not len(wanted) or not len(self):
            return {}
        ascending = self.ids[::-1]
        pos = np.searchsorted(ascending, wanted).clip(0, len(self) - 1)
        found = ascending[pos] == wanted
        return {d: len(self) - 1 - int(p) for d, p in zip(as_strings(wanted[found]), pos[found].tolist())}

    def lookup(self, doc_ids: Iterable[str]) -> dict[str, str]:
        """The texts of those of `doc_ids` that are in the corpus (for pools, reports, spot checks)."""
        rows = self.rows_of(doc_ids)
        ids = list(rows)
        return dict(zip(ids, self.texts_at(np.asarray([rows[d] for d in ids], dtype=np.int64))))

    def count_missing(self, doc_ids: Iterable[str]) -> int:
        doc_ids = list(doc_ids)
        found = self.rows_of(doc_ids)
        return sum(1 for d in doc_ids if d not in found)


class MemoryCorpus(Corpus):
    """Texts held in memory, canonical order (small sets built from Python iterables)."""

    def __init__(self, ids: np.ndarray, texts: list[str]):
        self.ids, self._texts = ids, texts

    def texts_at(self, rows: np.ndarray) -> list[str]:
        return [self._texts[i] for i in rows.tolist()]


def as_strings(ids: np.ndarray) -> list[str]:
    """Corpus ids (all of them or a selection) as Python strings, whichever dtype holds them."""
    return ids.astype(str).tolist() if ids.dtype.kind == "S" else ids.tolist()


def pack_ids(keys: list[str]) -> np.ndarray:
    """Ids as a numpy array: ASCII bytes when every id is ASCII, unicode otherwise."""
    try:
        return np.array(keys, dtype=bytes)
    except UnicodeEncodeError:
        return np.array(keys, dtype=str)


class FileCorpus(Corpus):
    """Texts read from a plain file at the byte offsets of an index (see module doc). `offsets` and `lengths` are
    arrays, or the .npy files of a saved index (the folder `index`), mapped by each read for the rows it needs."""

    def __init__(self, path: Path, fmt: str, ids: np.ndarray, offsets: np.ndarray | Path, lengths: np.ndarray | Path,
                 index: Path | None = None):
        self.path, self.fmt, self.ids, self.offsets, self.lengths = path, fmt, ids, offsets, lengths
        self.index = index
        self._fd: int | None = None
        self._pid = 0

    def texts_at(self, rows: np.ndarray) -> list[str]:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        try:
            offsets, lengths = _column(self.offsets)[rows], _column(self.lengths)[rows]  # copies: the maps close here
        except OSError as exc:  # removed as damaged by another process reading it
            raise HarnessError(f"{self.index}: the corpus index cannot be read ({exc}); run again to build it anew") \
                from None
        expected = as_strings(self.ids[rows])
        order = np.argsort(offsets, kind="stable")  # read in file order: sequential I/O
        parse = _PARSERS[self.fmt]
        out: list[str] = [""] * len(rows)
        for i, offset, length in zip(order.tolist(), offsets[order].tolist(), lengths[order].tolist()):
            raw = os.pread(self._fd, length, offset)
            if len(raw) != length:
                raise self._damaged(offset, f"the file ends {length - len(raw)} bytes before the indexed line does")
            try:
                key, out[i] = parse(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise self._damaged(offset, f"the {len(raw)} bytes there are not a line of the corpus ({exc})") \
                    from None
            if key != expected[i]:
                raise self._damaged(offset, f"the index has document {expected[i]!r} there, the file {key!r}")
        return out

    def _damaged(self, offset: int, what: str) -> HarnessError:
        """The file does not match the index: it changed after it was indexed, or the index is damaged. Texts read
        so far may be wrong, so the run stops; a saved index is removed, so the next run builds it anew."""
        if self.index is None:
            return HarnessError(f"{self.path}: changed after it was indexed for this run (at byte {offset}, {what}); "
                                "run again")
        shutil.rmtree(self.index, ignore_errors=True)
        return HarnessError(f"{self.path}: does not match its corpus index {self.index} (at byte {offset}, {what}): "
                            "the file changed after it was indexed, or the index is damaged; the index was removed, "
                            "run again to build it anew")

    def __del__(self):
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)

    def __getstate__(self):
        return {**self.__dict__, "_fd": None, "_pid": 0}


def _column(source: np.ndarray | Path) -> np.ndarray:
    return source if isinstance(source, np.ndarray) else np.load(source, mmap_mode="r")


# ---------------------------------------------------------------- line formats

def parse_beir_line(line: str) -> tuple[str, str]:
    row = json.loads(line)
    key = row["_id"]
    if type(key) is not str and type(key) is not int:  # an integer id (BEIR has some) reads as its digits
        raise ValueError(f"'_id' must be a string or an integer, got {json.dumps(key)[:60]}")
    return str(key), f"{_text_field(row, 'title')} {_text_field(row, 'text')}".strip()


def _text_field(row: dict, name: str) -> str:
    """A title or text: a string, or null/absent for none. Anything else (a list, an object, a number) would be
    encoded as its Python repr, so it is refused."""
    value = row.get(name)
    if value is None:
        return ""
    if type(value) is not str:
        raise ValueError(f"{name!r} must be a string or null, got {json.dumps(value)[:60]}")
    return value


def parse_tsv_line(line: str) -> tuple[str, str]:
    key, sep, text = line.rstrip("\r\n").partition("\t")
    if not sep:
        raise ValueError("expected 'id<TAB>text'")
    return key, text.strip()


def parse_pair_line(line: str) -> tuple[str, str]:
    key, text = json.loads(line)
    return key, text


_PARSERS: dict[str, Callable[[str], tuple[str, str]]] = {
    "beir": parse_beir_line, "tsv": parse_tsv_line, "pair": parse_pair_line}
_EXPECTED = {"beir": "a JSON object with '_id' and 'text'", "tsv": "'id<TAB>text'", "pair": "[id, text]"}
_BOM = b"\xef\xbb\xbf"
# What an id cannot hold: whitespace (\s: every character str.isspace() accepts; TREC columns are separated by it),
# control characters (NUL ends trec_eval's C strings), a BOM (dropped at the start of a file) and lone surrogates
# (not text). The TREC writer (`records.write_trec_run`) refuses the same set, so an id it would refuse after a
# whole encode is refused here, where it enters.
ID_BREAKERS = re.compile(r"\s|[\x00-\x1f\x7f-\x9f\ufeff\ud800-\udfff]")


def id_problem(key: str, *, query: bool = False) -> str | None:
    """Why the TREC run and qrels formats cannot carry `key` (see ID_BREAKERS; trec_eval also skips run lines
    starting with '#'), or None."""
    if not key:
        return "is empty"
    breaker = ID_BREAKERS.search(key)
    if breaker:
        return f"contains {breaker.group()!r}"
    if query and key.startswith("#"):
        return "starts with '#', which makes its lines of a TREC run comments to trec_eval"
    return None


def check_id(key: str, where: str, what: str = "document") -> str:
    """`key` if the TREC formats can carry it (`id_problem`), else a HarnessError at `where` (file:line)."""
    problem = id_problem(key, query=what == "query")
    if problem:
        raise HarnessError(f"{where}: {what} id {key!r} {problem}; ids are written to and read from TREC run and "
                           "qrels files, which cannot carry it: rename it (e.g. '_' for each space) in every file "
                           "that names it")
    return key


def raw_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset in the uncompressed stream, raw line) of a plain or gzipped file. A UTF-8 byte
    order mark at the start is skipped: it would become part of the first id."""
    opener = gzip.open if path.suffix == ".gz" else open
    offset = 0
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1 and raw.startswith(_BOM):
                    raw, offset = raw[len(_BOM):], len(_BOM)
                yield number, offset, raw
                offset += len(raw)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _corrupt_gzip(path, exc) from None
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read: {exc}") from None


def _corrupt_gzip(path: Path, reason: object) -> HarnessError:
    return HarnessError(f"{path}: the gzip stream is corrupt ({reason}); download the file again, or compress it "
                        "again from an intact copy")


def _gzip_damage(path: Path) -> str | None:
    """Why a gzipped file's stream is corrupt, or None. Asked when a line does not decode or parse: a damaged
    stream can decompress to garbage for a while before zlib or gzip's checksum at the end notices."""
    if path.suffix != ".gz":
        return None
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        return str(exc)
    except OSError:
        pass
    return None


def line_error(path: Path, number: int, problem: str) -> HarnessError:
    """The error for a line that does not read: `problem` at file:line, or a corrupt gzip stream if that is why."""
    damage = _gzip_damage(path)
    return _corrupt_gzip(path, damage) if damage else HarnessError(f"{path}:{number}: {problem}")


def decode_line(path: Path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise line_error(path, number, f"not valid UTF-8 at byte {exc.start} of the line ({exc.reason}); "
                                       "re-encode the file as UTF-8") from None


def iter_file_docs(path: Path, fmt: str) -> Iterator[tuple[str, str]]:
    """(id, text) of every document of a corpus file, file order (blank lines skipped)."""
    for number, _, raw in raw_lines(path):
        line = decode_line(path, number, raw)
        if line.strip():
            yield parse_line(path, number, line, fmt)


def parse_line(path: Path, number: int, line: str, fmt: str, what: str = "document") -> tuple[str, str]:
    """(id, text) of a line of a corpus or queries file, its id checked (`check_id`)."""
    try:
        key, text = _PARSERS[fmt](line)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise line_error(path, number, f"each line must be {_EXPECTED[fmt]} ({what}): {exc}") from None
    return check_id(key, f"{path}:{number}", what), text


# ---------------------------------------------------------------- building the index

class _IdsBuilder:
    """Gathers ids (packed into numpy blocks as they come) and their line offsets/lengths, then sorts."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []
        self.pending: list[str] = []
        self.offsets, self.lengths = array("q"), array("q")

    def add(self, key: str, offset: int, length: int) -> None:
        self.pending.append(key)
        self.offsets.append(offset)
        self.lengths.append(length)
        if len(self.pending) >= _ID_BLOCK:
            self._pack()

    def _pack(self) -> None:
        if self.pending:
            self.blocks.append(pack_ids(self.pending))
            self.pending = []

    def finish(self, *, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._pack()
        if not self.blocks:
            raise HarnessError(f"{where}: the corpus is empty; a retrieval evaluation needs documents")
        if len({block.dtype.kind for block in self.blocks}) > 1:  # a later block held a non-ASCII id
            self.blocks = [block.astype(str) for block in self.blocks]
        ids = np.concatenate(self.blocks)
        self.blocks = []
        order = canonical_order(ids, where=where)
        offsets = np.frombuffer(self.offsets, dtype=np.int64)[order]
        lengths = np.frombuffer(self.lengths, dtype=np.int64)[order].astype(np.int32)
        self.offsets, self.lengths = array("q"), array("q")
        return ids[order], offsets, lengths


def canonical_order(ids: np.ndarray, *, where: str) -> np.ndarray:
    """Row order that sorts `ids` descending; refuses duplicates and ids numpy cannot hold exactly."""
    order = np.argsort(ids, kind="stable")[::-1]
    ordered = ids[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(same):
        raise HarnessError(f"{where}: duplicate document id {as_strings(ordered[same[:1]])[0]!r}; ids must be unique")
    return order


def index_file(path: Path, fmt: str, builder: _IdsBuilder, spill=None) -> None:
    """One pass over a corpus file: every document's id and line position (in the spill file when given)."""
    spill_offset = 0
    for number, offset, raw in raw_lines(path):
        line = decode_line(path, number, raw)
        if not line.strip():
            continue
        key, _ = parse_line(path, number, line, fmt)
        if spill is None:
            builder.add(key, offset, len(raw))
        else:
            if not raw.endswith(b"\n"):
                raw += b"\n"
            spill.write(raw)
            builder.add(key, spill_offset, len(raw))
            spill_offset += len(raw)


def spill_docs(docs: Iterable[tuple[str, str]], builder: _IdsBuilder, spill) -> None:
    offset = 0
    for key, text in docs:
        raw = (json.dumps([key, text], ensure_ascii=False) + "\n").encode()
        spill.write(raw)
        builder.add(key, offset, len(raw))
        offset += len(raw)


_COLUMNS = ("ids", "offsets", "lengths")


def _checksum(folder: Path) -> str:
    """sha256 over the sha256 of each column file (about 0.15 s for MS MARCO's 8.8M rows)."""
    return hashlib.sha256("".join(file_sha256(folder / f"{c}.npy") for c in _COLUMNS).encode()).hexdigest()


def source_key(parts: list) -> str:
    return hashlib.sha256(json.dumps([INDEX_VERSION, *parts], default=str).encode()).hexdigest()[:20]


def file_stat(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


class IndexDir:
    """A saved index: ids.npy, offsets.npy, lengths.npy, (spill file), meta.json (the columns' checksum, and
    fingerprints by the digest of the queries and qrels they were computed with)."""

    def __init__(self, root: Path, key: str):
        self.path = root / "corpus-index" / key

    def load(self, fmt: str, source: Path | None) -> FileCorpus | None:
        meta = self.path / "meta.json"
        if not meta.exists():
            return None
        try:
            info = json.loads(meta.read_text())
            if info.get("checksum") != _checksum(self.path):
                raise ValueError("its files do not match the checksum in meta.json")
            ids = np.load(self.path / "ids.npy")
        except (OSError, ValueError) as exc:
            log.warning("%s: the saved corpus index is damaged (%s); removed, it is built again", self.path, exc)
            shutil.rmtree(self.path, ignore_errors=True)
            return None
        text_file = self.path / "spill" if info.get("spill") else source
        assert text_file is not None, "an index without a spill file is loaded with its source file"
        return FileCorpus(text_file, info["fmt"], ids, self.path / "offsets.npy", self.path / "lengths.npy",
                          index=self.path)

    def spill(self, fill: Callable[[IO[bytes]], None]) -> Path:
        """A temporary spill file beside the index, written by `fill`; removed if that fails. A write error names
        the index folder (numpy's and the file's own errors name no file), so the caller can blame the cache."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=".spill-", delete=False)
        try:
            with handle:
                fill(handle)
        except BaseException as exc:
            os.unlink(handle.name)
            if isinstance(exc, OSError) and exc.filename is None:
                raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None
            raise
        return Path(handle.name)

    def save(self, fmt: str, ids, offsets, lengths, spill_tmp: Path | None, source: Path | None) -> FileCorpus:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.path.parent))
        try:
            for column, values in zip(_COLUMNS, (ids, offsets, lengths)):
                with open(tmp / f"{column}.npy", "wb") as handle:
                    write_npy(handle, values)
            if spill_tmp is not None:
                os.replace(spill_tmp, tmp / "spill")
            (tmp / "meta.json").write_text(json.dumps({"fmt": fmt, "spill": spill_tmp is not None,
                                                       "checksum": _checksum(tmp), "fingerprints": {}}))
        except OSError as exc:  # the file's own errors name no file: name the index, so the caller blames the cache
            shutil.rmtree(tmp, ignore_errors=True)
            if spill_tmp is not None:
                spill_tmp.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from None
        try:
            os.replace(tmp, self.path)
        except OSError:  # built meanwhile by another process: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
        corpus = self.load(fmt, source)
        assert corpus is not None
        return corpus

    def fingerprint(self, rest_digest: str) -> str | None:
        try:
            return json.loads((self.path / "meta.json").read_text())["fingerprints"].get(rest_digest)
        except (OSError, ValueError, KeyError):
            return None

    def remember(self, rest_digest: str, fingerprint: str) -> None:
        meta = self.path / "meta.json"
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            return
        info["fingerprints"][rest_digest] = fingerprint
        tmp = meta.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, meta)


def open_file_corpus(path: Path, fmt: str, *, cache: Path | None, where: str) -> tuple[Corpus, IndexDir | None]:
    """A plain or gzipped corpus file as a Corpus (see module doc)."""
    gz = path.suffix == ".gz"
    if cache is None:
        if gz:
            return memory_corpus(iter_file_docs(path, fmt), where=where), None
        builder = _IdsBuilder()
        index_file(path, fmt, builder)
        return FileCorpus(path, fmt, *builder.finish(where=where)), None
    index = IndexDir(cache, source_key(["file", fmt, *file_stat(path)]))
    corpus = index.load(fmt, path)
    if corpus is None:
        builder = _IdsBuilder()
        if gz:
            spill = index.spill(lambda file: index_file(path, fmt, builder, file))
            ids, offsets, lengths = builder.finish(where=where)
            corpus = index.save(fmt, ids, offsets, lengths, spill, None)
        else:
            index_file(path, fmt, builder)
            corpus = index.save(fmt, *builder.finish(where=where), None, path)
    return corpus, index


def open_docs_corpus(docs: Callable[[], Iterable[tuple[str, str]]], key: list, *, cache: Path | None,
                     where: str) -> tuple[Corpus, IndexDir | None]:
    """A corpus given as an (id, text) iterator (ir_datasets' docs_iter): spilled once into the cache."""
    if cache is None:
        return memory_corpus(docs(), where=where), None
    index = IndexDir(cache, source_key(["docs", *key]))
    corpus = index.load("pair", None)
    if corpus is None:
        builder = _IdsBuilder()
        spill = index.spill(lambda file: spill_docs(docs(), builder, file))
        ids, offsets, lengths = builder.finish(where=where)
        corpus = index.save("pair", ids, offsets, lengths, spill, None)
    return corpus, index


def memory_corpus(docs: Iterable[tuple[str, str]], *, where: str) -> MemoryCorpus:
    keys: list[str] = []
    texts: list[str] = []
    for key, text in docs:
        keys.append(key)
        texts.append(text)
    if not keys:
        raise HarnessError(f"{where}: the corpus is empty; a retrieval evaluation needs documents")
    ids = pack_ids(keys)
    order = canonical_order(ids, where=where)
    return MemoryCorpus(ids[order], [texts[i] for i in order.tolist()])
