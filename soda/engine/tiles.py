"""Decoded compression tiles of tile-compressed images (``.fits.fz``), kept for the next
request of the process and read only once per tile.

A box is assembled from the tiles it overlaps: the kept ones are taken, the missing ones
decoded with astropy (``CompImageHDU.section``) in as few calls as there are rectangles of
missing tiles (rows of tiles with the same run of missing columns merged; one call for
any number of DES one-row tiles), each tile then kept as a view of what its call decoded.

The cache is bounded in bytes and forgets the least recently used tiles first. It counts
what it really holds: the arrays one call decoded stay in memory while any of their tiles
is kept, so they count whole until their last tile goes. Thread-safe: one lock around its
books; decoding happens outside it (two threads may decode the same tile, once each).
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from soda.engine.pixels import PixelBox

# A tile: (tile row, tile column) in the image's grid of tiles.
Tile = tuple[int, int]
# Decodes the pixels [y0:y1, x0:x1] (tile-aligned) of one HDU.
Decoder = Callable[[PixelBox], np.ndarray]


class TileCache:
    """Decoded tiles by key, least recently used first out beyond ``max_bytes`` (0: none kept)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._tiles: OrderedDict[Hashable, tuple[np.ndarray, int]] = OrderedDict()  # key -> (tile, block id)
        self._blocks: dict[int, list[int]] = {}  # block id -> [bytes, tiles kept]
        self._held = 0
        self._ids = itertools.count()
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        """Bytes of decoded pixels the cache keeps in memory."""
        return self._held

    def __len__(self) -> int:
        return len(self._tiles)

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()
            self._blocks.clear()
            self._held = 0

    def get(self, key: Hashable) -> np.ndarray | None:
        with self._lock:
            kept = self._tiles.get(key)
            if kept is None:
                return None
            self._tiles.move_to_end(key)
            return kept[0]

    def get_many(self, keys: list[Hashable]) -> list[np.ndarray | None]:
        """``get`` of each key, under one hold of the lock (a box of a row-tiled image asks
        for one tile per pixel row)."""
        out: list[np.ndarray | None] = []
        with self._lock:
            for key in keys:
                kept = self._tiles.get(key)
                if kept is None:
                    out.append(None)
                else:
                    self._tiles.move_to_end(key)
                    out.append(kept[0])
        return out

    def put_block(self, block: np.ndarray, tiles: list[tuple[Hashable, np.ndarray]]) -> None:
        """Keep ``tiles`` (views of ``block``, the array one decoding made)."""
        if block.nbytes > self.max_bytes:
            return
        evicted = []  # freed once the lock is released (unmapping a block takes a while)
        with self._lock:
            bid = next(self._ids)
            self._blocks[bid] = [block.nbytes, 0]
            self._held += block.nbytes
            for key, tile in tiles:
                if key in self._tiles:
                    self._drop(key)
                self._tiles[key] = (tile, bid)
                self._blocks[bid][1] += 1
            if self._blocks[bid][1] == 0:
                self._release(bid)
            while self._held > self.max_bytes and self._tiles:
                evicted.append(self._drop(next(iter(self._tiles))))
        del evicted

    def _drop(self, key: Hashable) -> np.ndarray:
        tile, bid = self._tiles.pop(key)
        self._blocks[bid][1] -= 1
        if self._blocks[bid][1] == 0:
            self._release(bid)
        return tile

    def _release(self, bid: int) -> None:
        size, _ = self._blocks.pop(bid)
        self._held -= size


def _rectangles(missing: list[Tile]) -> list[tuple[int, int, int, int]]:
    """Missing tiles (in row, column order) as rectangles of tiles (row0, row1, col0, col1,
    inclusive): runs of columns per row, then equal runs of consecutive rows merged."""
    runs: list[tuple[int, int, int]] = []
    for r, c in missing:
        if runs and runs[-1][0] == r and runs[-1][2] == c - 1:
            runs[-1] = (r, runs[-1][1], c)
        else:
            runs.append((r, c, c))
    open_: dict[tuple[int, int], list[int]] = {}
    done: list[tuple[int, int, int, int]] = []
    for r, c0, c1 in runs:
        rect = open_.get((c0, c1))
        if rect is not None and rect[1] == r - 1:
            rect[1] = r
        else:
            if rect is not None:
                done.append((rect[0], rect[1], c0, c1))
            open_[(c0, c1)] = [r, r]
    done += [(r0, r1, c0, c1) for (c0, c1), (r0, r1) in open_.items()]
    return done


@dataclass
class Sweep:
    """Many cuts about to be made going down an image's pixel rows (a bulk job's rows,
    sorted by pixel row): what ``read_tiled`` decodes with each box besides its own tiles.

    * ``rows``: when the tiles are shorter than that (a row-tiled image), the pixel rows
      below the box are decoded with it, up to ``rows`` of them: one decoding call then
      serves many cuts (astropy's section costs as much per call as decoding a hundred
      10,000-pixel rows);
    * ``boxes``: the boxes the cuts to come need (approximately: a tile missed is decoded
      when a cut asks for it) on the pixel grid of ``shape``, in the files ``sources``.
      Rows below a box are then decoded only down to the last row a box to come needs,
      and on an image tiled in columns too (256x256 tiles), every tile those boxes need in
      the box's rows of tiles is decoded in the same call, not one call per cut.
    """

    rows: int
    boxes: tuple[PixelBox, ...] = ()
    shape: tuple[int, int] | None = None
    sources: frozenset[str] = frozenset()
    _masks: dict[tuple[tuple[int, int], tuple[int, int]], np.ndarray] = field(default_factory=dict, repr=False)

    def wanted(self, source: str, shape: tuple[int, int], tile_shape: tuple[int, int]) -> np.ndarray | None:
        """The tiles of an HDU of ``source`` the cuts to come need (a boolean array: rows of
        tiles x columns of tiles); None when not known."""
        if source not in self.sources or tuple(shape) != self.shape:
            return None
        key = (tuple(shape), tuple(tile_shape))
        mask = self._masks.get(key)
        if mask is None:
            (ny, nx), (ty, tx) = shape, tile_shape
            mask = np.zeros((-(-ny // ty), -(-nx // tx)), dtype=bool)
            for b in self.boxes:
                y0, y1, x0, x1 = max(b.y0, 0), min(b.y1, ny), max(b.x0, 0), min(b.x1, nx)
                if y0 < y1 and x0 < x1:
                    mask[y0 // ty:(y1 - 1) // ty + 1, x0 // tx:(x1 - 1) // tx + 1] = True
            self._masks[key] = mask
        return mask


_SWEEP: ContextVar[Sweep | None] = ContextVar("sweep", default=None)


@contextmanager
def sweeping(sweep: Sweep) -> Iterator[None]:
    """Within the block, the calling thread's reads are those of ``sweep``."""
    token = _SWEEP.set(sweep)
    try:
        yield
    finally:
        _SWEEP.reset(token)


def current_sweep() -> Sweep | None:
    """The calling thread's sweep (``sweeping``), if any."""
    return _SWEEP.get()


# Missing tiles are decoded in strips of at most this many bytes (at 8 bytes a pixel), so
# a large cut never holds more than one strip beside its own pixels.
STRIP_BYTES = 16 * 2**20


def read_tiled(cache: TileCache, key: Hashable, shape: tuple[int, int], tile_shape: tuple[int, int],
               box: PixelBox, decode: Decoder, source: str = "") -> np.ndarray:
    """The pixels [y0:y1, x0:x1] of a tile-compressed HDU of ``shape`` (ny, nx) tiled by
    ``tile_shape`` (rows, columns), from ``cache`` (tiles under ``(key, tile)``) and ``decode``;
    within ``sweeping``, with the tiles the sweep's cuts to come need (``source``: the file).

    A cut whose missing tiles would fill more than half the cache keeps none of them: it
    would push out every other cut's tiles and hold the memory of a large cut for nothing.
    """
    ny, nx = shape
    ty, tx = tile_shape
    y0, y1 = min(max(box.y0, 0), ny), min(max(box.y1, 0), ny)
    x0, x1 = min(max(box.x0, 0), nx), min(max(box.x1, 0), nx)
    if y0 >= y1 or x0 >= x1:
        return decode(PixelBox(x0, x1, y0, y1))
    wanted = [(r, c) for r in range(y0 // ty, (y1 - 1) // ty + 1) for c in range(x0 // tx, (x1 - 1) // tx + 1)]
    found: list[tuple[Tile, np.ndarray]] = []
    missing = []
    for tile, kept in zip(wanted, cache.get_many([(key, tile) for tile in wanted]), strict=True):
        if kept is None:
            missing.append(tile)
        else:
            found.append((tile, kept))
    if not missing and tx >= nx:
        # Every tile cached, each a band of whole rows (a row-tiled image): the box is their
        # rows stacked, one copy instead of one placement per tile.
        return np.concatenate([tile[max(y0 - r * ty, 0):y1 - r * ty, x0:x1] for (r, _), tile in found])
    keep = len(missing) * ty * tx * 8 <= cache.max_bytes // 2
    if keep:
        extra = _ahead(cache, key, shape, tile_shape, missing, x0, x1, source)
        if extra and (len(missing) + len(extra)) * ty * tx * 8 <= cache.max_bytes // 2:
            missing = sorted(missing + extra)
    out: np.ndarray | None = None

    def place(tile_at: Tile, tile: np.ndarray) -> None:
        nonlocal out
        if out is None:
            out = np.empty((y1 - y0, x1 - x0), dtype=tile.dtype)
        # The tile's pixels inside the box, in the tile and in the box.
        ty0, tx0 = tile_at[0] * ty, tile_at[1] * tx
        a0, a1 = max(y0, ty0), min(y1, ty0 + tile.shape[0])
        b0, b1 = max(x0, tx0), min(x1, tx0 + tile.shape[1])
        out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = tile[a0 - ty0:a1 - ty0, b0 - tx0:b1 - tx0]

    for tile_at, tile in found:
        place(tile_at, tile)
    for r0, r1, c0, c1 in _rectangles(missing):
        width = min((c1 + 1) * tx, nx) - c0 * tx
        step = max(1, STRIP_BYTES // (ty * width * 8))  # rows of tiles per decode
        for s0 in range(r0, r1 + 1, step):
            s1 = min(r1, s0 + step - 1)
            block = decode(PixelBox(c0 * tx, c0 * tx + width, s0 * ty, min((s1 + 1) * ty, ny)))
            made = []
            for r in range(s0, s1 + 1):
                for c in range(c0, c1 + 1):
                    tile = block[(r - s0) * ty:(r - s0 + 1) * ty, (c - c0) * tx:(c - c0 + 1) * tx]
                    if r * ty < y1 and c * tx < x1 and (c + 1) * tx > x0:  # not one decoded for cuts to come
                        place((r, c), tile)
                    made.append(((key, (r, c)), tile))
            if keep:
                cache.put_block(block, made)
            del block, made
    assert out is not None
    return out


def _ahead(cache: TileCache, key: Hashable, shape: tuple[int, int], tile_shape: tuple[int, int],
           missing: list[Tile], x0: int, x1: int, source: str) -> list[Tile]:
    """The tiles to decode with a box's missing ones within a sweep (``Sweep``): those of
    the box's rows of tiles that the cuts to come need, and the rows of tiles below (when
    shorter than the sweep's rows) up to the image's end, the first row already (partly)
    kept, or the last row the cuts to come need."""
    sweep = _SWEEP.get()
    if sweep is None or not missing:
        return []
    ty, tx = tile_shape
    wanted = sweep.wanted(source, shape, tile_shape) if source else None
    have = set(missing)
    extra: list[Tile] = []
    if wanted is not None and wanted.shape[1] > 1:
        for r in sorted({r for r, _ in missing}):
            columns = np.flatnonzero(wanted[r])
            if columns.size:  # one run from the first tile needed to the last: one call
                extra += [(r, int(c)) for c in range(columns[0], columns[-1] + 1)
                          if (r, int(c)) not in have and cache.get((key, (r, int(c)))) is None]
    rows = sweep.rows // ty
    if rows <= 0:
        return extra
    last = max(r for r, _ in missing)
    stop = min(last + rows, (shape[0] - 1) // ty)
    columns = range(x0 // tx, (x1 - 1) // tx + 1)
    if wanted is not None:
        needed = np.flatnonzero(wanted[last + 1:stop + 1, columns.start:columns.stop].any(axis=1))
        stop = last + 1 + int(needed[-1]) if needed.size else last
    for r in range(last + 1, stop + 1):
        row = [(r, c) for c in columns]
        if any(cache.get((key, tile)) is not None for tile in row):
            break
        extra += row
    return extra
