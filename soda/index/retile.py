"""Rewrite a tile-compressed FITS file with square compression tiles (pure FITS, no database).

fpack and DESDM compress one image row per tile, so a cutout of h rows decompresses h
whole rows; with square tiles it decompresses only the tiles the box meets. Each
compressed image HDU is rewritten with N x N tiles (FITS tiled image compression,
FITS 4.0 §10.1), keeping its compression algorithm, BITPIX and image header; every
other HDU is copied unchanged, as are compressed HDUs that need no rewriting.

Pixels: integer planes and float planes stored without quantisation are copied exactly.
Quantised float planes (ZQUANTIZ, as DES SCI and WGT) cannot keep their bytes: a tile's
quantisation step and zero (ZSCALE, ZZERO, FITS 4.0 §10.2) and its dither sequence depend
on the tile. They are either quantised again with the original's parameters (level or
fixed step, dither method, ZDITHER0: each pixel moves by at most half the new tile's step)
or, ``lossless``, stored unquantised as GZIP_2 floats (every pixel exact, larger files).

The copy's primary header records what each HDU was (``RTORIGn`` cards), so the original
tiling can be restored from the copy alone (``original_tilings``).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.compressed import NO_DITHER, SUBTRACTIVE_DITHER_1, SUBTRACTIVE_DITHER_2
from astropy.utils.exceptions import AstropyUserWarning

DEFAULT_TILE = 256
LOSSLESS_FLOATS = "GZIP_2"  # the byte shuffle suits floats; RICE cannot hold them unquantised
RECORD = "RTORIG"  # RTORIG<n>: what compressed HDU n was, in the copy's primary header
# ZQUANTIZ values (FITS 4.0 §10.2); a file without the card was quantised without dithering.
DITHER_METHODS = {"NO_DITHER": NO_DITHER, "SUBTRACTIVE_DITHER_1": SUBTRACTIVE_DITHER_1,
                  "SUBTRACTIVE_DITHER_2": SUBTRACTIVE_DITHER_2}


class NotRetilable(Exception):
    """A file this rewrite cannot or need not handle, with the reason for the operator."""


@dataclass(frozen=True)
class Tiling:
    """How one compressed image HDU is stored: what its Z cards say (FITS 4.0 §10.1)."""

    hdu: int
    name: str
    compression: str            # ZCMPTYPE
    tile: tuple[int, ...]       # ZTILEn, numpy order (rows first)
    shape: tuple[int, ...]      # ZNAXISn, numpy order
    bitpix: int                 # ZBITPIX
    quantize: str | None        # ZQUANTIZ when quantised (ZSCALE column); None when not
    level: float | None         # NOISEBIT, or minus the median step (ZSCALE) when not recorded
    dither_seed: int | None     # ZDITHER0
    hcomp: tuple[int, int] | None  # HCOMPRESS (SCALE, SMOOTH)

    @property
    def is_float(self) -> bool:
        return self.bitpix < 0

    def card(self) -> str:
        """A one-line record of the tiling, read back by ``from_card``."""
        parts = [f"HDU={self.hdu}", f"ZCMPTYPE={self.compression}",
                 "ZTILE=" + ",".join(str(t) for t in reversed(self.tile))]
        if self.quantize:
            parts += [f"ZQUANTIZ={self.quantize}", f"NOISEBIT={self.level!r}",
                      f"ZDITHER0={self.dither_seed}"]
        if self.hcomp:
            parts += [f"SCALE={self.hcomp[0]}", f"SMOOTH={self.hcomp[1]}"]
        return " ".join(parts)


@dataclass(frozen=True)
class PlaneChange:
    hdu: int
    name: str
    before: str                 # "RICE_1 1x10000", numpy order rows x columns
    after: str
    pixels: str                 # "exact" or "requantised (max |change| ... steps)"


@dataclass(frozen=True)
class RetileResult:
    planes: tuple[PlaneChange, ...]
    bytes_before: int
    bytes_after: int
    seconds: float


def _setting(header: fits.Header, name: str) -> float | None:
    for i in range(1, 1000):
        key = header.get(f"ZNAME{i}")
        if key is None:
            return None
        if str(key).strip().upper() == name:
            return float(header[f"ZVAL{i}"])
    return None


def _tiling(index: int, table: fits.BinTableHDU) -> Tiling:
    h = table.header
    ndim = int(h["ZNAXIS"])
    shape = tuple(int(h[f"ZNAXIS{i}"]) for i in range(ndim, 0, -1))
    tile = tuple(int(h.get(f"ZTILE{i}", 1 if i > 1 else h[f"ZNAXIS{i}"])) for i in range(ndim, 0, -1))
    quantised = int(h["ZBITPIX"]) < 0 and "ZSCALE" in table.columns.names
    level = seed = None
    method = None
    if quantised:
        method = str(h.get("ZQUANTIZ", "NO_DITHER")).strip()
        seed = int(h.get("ZDITHER0", 0)) if method != "NO_DITHER" else None
        level = _setting(h, "NOISEBIT")
        if level is None:
            # fpack does not always record its level; its median step, as a fixed step,
            # quantises as coarsely as the original did.
            steps = np.asarray(table.data["ZSCALE"], dtype=float)
            steps = steps[steps > 0]
            level = -float(np.median(steps)) if steps.size else 0.0
    compression = str(h.get("ZCMPTYPE", "RICE_1")).strip()
    hcomp = None
    if compression.startswith("HCOMPRESS"):
        hcomp = (int(_setting(h, "SCALE") or 0), int(_setting(h, "SMOOTH") or 0))
    return Tiling(hdu=index, name=str(h.get("EXTNAME", "")).strip(), compression=compression,
                  tile=tile, shape=shape, bitpix=int(h["ZBITPIX"]), quantize=method, level=level,
                  dither_seed=seed, hcomp=hcomp)


def tilings(path: Path) -> list[Tiling]:
    """The tiling of every compressed image HDU of a file (none for a plain FITS file)."""
    with fits.open(path, disable_image_compression=True, memmap=False) as hdul:
        return [_tiling(i, hdu) for i, hdu in enumerate(hdul)
                if isinstance(hdu, fits.BinTableHDU) and hdu.header.get("ZIMAGE") is True]


def square(t: Tiling, tile: int) -> tuple[int, ...]:
    """The square tiling of an image: N x N over its last two axes (clipped to the image),
    one plane deep along any others."""
    return tuple(1 for _ in t.shape[:-2]) + tuple(min(tile, n) for n in t.shape[-2:])


def needs_retiling(path: Path, tile: int = DEFAULT_TILE) -> bool:
    """Whether any compressed image HDU of the file is not tiled N x N already."""
    return any(len(t.shape) >= 2 and t.tile != square(t, tile) for t in tilings(path))


def original_tilings(path: Path) -> list[str]:
    """The ``RTORIGn`` records of a retiled copy (empty for a file never retiled)."""
    header = fits.getheader(path, 0)
    return [str(header[k]) for k in header if k.startswith(RECORD) and k[len(RECORD):].isdigit()]


def _describe(compression: str, tile: tuple[int, ...]) -> str:
    return f"{compression} {'x'.join(str(n) for n in tile)}"


def _options(t: Tiling, tile: tuple[int, ...], lossless: bool) -> dict[str, object]:
    options: dict[str, object] = {"compression_type": t.compression, "tile_shape": tile}
    if t.hcomp:
        options |= {"hcomp_scale": t.hcomp[0], "hcomp_smooth": t.hcomp[1]}
    if t.is_float:
        if t.quantize is None or lossless:
            options |= {"quantize_level": 0.0}  # stored as they are (FITS 4.0 §10.2)
            if t.quantize is not None and t.compression not in ("GZIP_1", "GZIP_2"):
                options["compression_type"] = LOSSLESS_FLOATS
        else:
            options |= {"quantize_level": t.level, "quantize_method": DITHER_METHODS[t.quantize],
                        "dither_seed": t.dither_seed or 0}
    return options


def steps_moved(before: np.ndarray, after: np.ndarray, steps: np.ndarray, tile: tuple[int, ...]) -> float:
    """The largest change of a requantised 2-d plane, in quantisation steps of the copy's
    tile it lies in (``steps``: the copy's ZSCALE column, tiles in row-major order)."""
    (ty, tx), (ny, nx) = tile[-2:], before.shape[-2:]
    per_row = -(-nx // tx)
    worst = 0.0
    for k, step in enumerate(steps):
        y, x = divmod(k, per_row)
        block = (slice(y * ty, (y + 1) * ty), slice(x * tx, (x + 1) * tx))
        diff = np.abs(after[block].astype(np.float64) - before[block].astype(np.float64))
        moved = float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0
        if moved > 0:
            worst = max(worst, moved / step if step > 0 else np.inf)
    return worst


def _temp(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{os.getpid()}.retile-tmp")


@dataclass(frozen=True)
class _Plan:
    hdu: int
    tiling: Tiling
    target: tuple[int, ...]


def _plans(found: list[Tiling], tile: int) -> Iterator[_Plan]:
    for t in found:
        if len(t.shape) >= 2 and t.tile != square(t, tile):
            yield _Plan(t.hdu, t, square(t, tile))


def retile_file(src: Path, dst: Path, tile: int = DEFAULT_TILE, lossless: bool = False,
                check: bool = True) -> RetileResult:
    """Write ``dst``: ``src`` with N x N compression tiles. Atomic: ``dst`` appears complete
    or not at all (a temporary file beside it is renamed). ``check`` reads every rewritten
    plane back and compares it with the original's pixels.

    NotRetilable when ``src`` has no compressed image HDU that is not square-tiled already.
    """
    if tile < 16 or tile > 65536:
        raise ValueError(f"the tile side must be 16 to 65536 pixels, not {tile}")
    started = time.monotonic()
    try:
        found = tilings(src)
    except OSError as exc:
        raise NotRetilable(f"unreadable: {exc}") from None
    if not found:
        raise NotRetilable("no tile-compressed image HDU")
    plans = {p.hdu: p for p in _plans(found, tile)}
    if not plans:
        raise NotRetilable(f"every compressed image HDU is tiled {tile}x{tile} already")
    dst.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp(dst)
    changes: list[PlaneChange] = []
    try:
        with fits.open(src, disable_image_compression=True, memmap=True) as raw, \
                fits.open(src, do_not_scale_image_data=True, memmap=True) as images:
            # The primary HDU's data as stored; its header with the record after every
            # card of the original (long values take CONTINUE cards, so no comment).
            header = raw[0].header.copy()
            header.append(("COMMENT", f"cutout retile: tiles made {tile}x{tile}; "
                                      f"{RECORD}n: HDU n before"), end=True)
            for i, p in plans.items():
                header.append((f"{RECORD}{i}", p.tiling.card()), end=True)
            temp.write_bytes(header.tostring().encode("ascii"))
            info = raw.fileinfo(0)
            _copy_bytes(src, info["datLoc"], info["datLoc"] + info["datSpan"], temp)
            for i in range(1, len(raw)):
                if i not in plans:
                    info = raw.fileinfo(i)  # the whole HDU as stored, bytes unchanged
                    _copy_bytes(src, info["hdrLoc"], info["datLoc"] + info["datSpan"], temp)
                    continue
                changes.append(_rewrite(temp, images[i], plans[i], lossless, check))
                images[i].data = None  # drop the decompressed plane before the next
        os.replace(temp, dst)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return RetileResult(tuple(changes), src.stat().st_size, dst.stat().st_size,
                        time.monotonic() - started)


def _copy_bytes(src: Path, start: int, end: int, path: Path) -> None:
    """Append bytes ``start`` to ``end`` of ``src`` to ``path``."""
    with open(src, "rb") as fin, open(path, "ab") as fout:
        fin.seek(start)
        left = end - start
        while left > 0:
            chunk = fin.read(min(left, 1 << 24))
            if not chunk:
                raise OSError(f"{src.name} ends before byte {end}")
            fout.write(chunk)
            left -= len(chunk)


def _compare(path: Path, index: int, data: np.ndarray, tile: tuple[int, ...],
             requantised: bool) -> float | None:
    """Read a rewritten plane back, one row of tiles at a time (to bound memory): None when
    every pixel is the original's, else the largest change in quantisation steps."""
    if requantised:
        with fits.open(path, disable_image_compression=True, memmap=False) as raw:
            steps = np.asarray(raw[index].data["ZSCALE"], dtype=float)
    nan = data.dtype.kind == "f"
    with fits.open(path, do_not_scale_image_data=True, memmap=False) as back:
        hdu = back[index]
        if data.ndim != 2:
            same = np.array_equal(hdu.data, data, equal_nan=nan)
            return None if same else float("nan")
        worst: float | None = None
        ty, per_row = tile[0], -(-data.shape[1] // tile[1])
        for band, y0 in enumerate(range(0, data.shape[0], ty)):
            before, after = data[y0:y0 + ty], hdu.section[y0:y0 + ty, :]
            if np.array_equal(before, after, equal_nan=nan):
                continue
            if not requantised:
                return float("nan")
            moved = steps_moved(before, after, steps[band * per_row:(band + 1) * per_row], tile)
            worst = max(worst or 0.0, moved)
    return worst


# The cards that lay out an image HDU, which astropy writes itself.
_STRUCTURE = ("SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTEND")


def _structural(key: str) -> bool:
    return key in _STRUCTURE or (key.startswith("NAXIS") and key[5:].isdigit())


def _keep_cards(new: fits.Header, old: fits.Header) -> None:
    """Every card of the original image header, in its order: astropy drops the raw data's
    BSCALE and BZERO (an unsigned or scaled integer plane), which are put back."""
    cards = [c for c in old.cards if not _structural(c.keyword)]
    if [c.image for c in new.cards if not _structural(c.keyword)] == [c.image for c in cards]:
        return
    for key in {c.keyword for c in new.cards if not _structural(c.keyword)}:
        del new[key]
    for card in cards:
        new.append(card, end=True)


def _rewrite(path: Path, hdu: fits.CompImageHDU, plan: _Plan, lossless: bool, check: bool) -> PlaneChange:
    t = plan.tiling
    data = hdu.data
    header = hdu.header.copy()
    options = _options(t, plan.target, lossless)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        new = fits.CompImageHDU(data=data, header=header, name=t.name or None,
                                do_not_scale_image_data=True, **options)  # type: ignore[arg-type]
        _keep_cards(new.header, header)
        with fits.open(path, mode="append", do_not_scale_image_data=True) as out:
            out.append(new)
            written_index = len(out) - 1
    requantised = bool(t.is_float and t.quantize and not lossless)
    pixels = "requantised" if requantised else "exact"
    if check:
        moved = _compare(path, written_index, data, plan.target, requantised)
        if moved is not None and not requantised:
            raise AssertionError(f"HDU {t.hdu} ({t.name}): pixels changed in a lossless rewrite")
        if requantised:
            pixels = f"requantised (<= {moved or 0:.3f} step)"  # of the pixel's tile
    return PlaneChange(t.hdu, t.name, _describe(t.compression, t.tile),
                       _describe(str(options["compression_type"]), plan.target), pixels)
