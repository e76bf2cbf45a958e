"""FITS header cards are written whole: no comment is ever cut (astropy would warn)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from astropy.io import fits

from renderers.fits import CARD_LENGTH, cutout_header, fitting_comment, set_card, write_fits

pytestmark = pytest.mark.filterwarnings("error")


def written(header: fits.Header) -> fits.Header:
    """``header`` through a FITS file and back, with every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = write_fits([(np.zeros((2, 3), np.float32), header)], {})
        with fits.open(io.BytesIO(body)) as hdul:
            hdul.verify("exception")
            return hdul[1].header.copy()


@pytest.mark.parametrize("length", range(0, 140, 3))
@pytest.mark.parametrize("comment", ["source file", "source pixels cut (FITS section, 1-based)"])
def test_string_values_of_every_length_are_written_whole(length: int, comment: str) -> None:
    value = ("ivo://x/" + "abcdefghij" * 14)[:length]
    header = fits.Header()
    set_card(header, "SRCFILE", value, comment)
    back = written(header)
    assert back["SRCFILE"] == value.rstrip()  # FITS ignores trailing blanks only
    kept = header.comments["SRCFILE"]
    assert kept in (comment, "")
    assert back.comments["SRCFILE"] == kept
    one_card = len(fits.Card("SRCFILE", value).image) == CARD_LENGTH
    if not one_card:
        assert kept == comment  # continued values take their comment along on CONTINUE cards
    elif not kept:
        assert len(f"SRCFILE = '{value}' / {comment}") > CARD_LENGTH  # dropped only when it had no room


def test_comment_kept_when_it_just_fits_and_dropped_one_character_later() -> None:
    comment = "c" * 20
    fits_exactly = "v" * (CARD_LENGTH - len("KEY     = ''") - len(" / ") - len(comment))
    assert fitting_comment("KEY", fits_exactly, comment) == comment
    assert len(str(fits.Card("KEY", fits_exactly, comment))) == CARD_LENGTH
    assert fitting_comment("KEY", fits_exactly + "v", comment) == ""
    assert fitting_comment("KEY", 1.5, "n" * 47) == "n" * 47  # value field to column 30, then " / "
    assert fitting_comment("KEY", 1.5, "n" * 48) == ""


def test_numbers_and_short_values_keep_their_comments() -> None:
    header = fits.Header()
    set_card(header, "LTV1", -9000.123456789012, "offset of this cut in the source")
    set_card(header, "SRCHDU", "SCI", "source HDU")
    set_card(header, "NCUT", 3, "number of cutouts in this file")
    back = written(header)
    assert back.comments["LTV1"] == "offset of this cut in the source"
    assert back["LTV1"] == pytest.approx(-9000.123456789012, rel=1e-15)
    assert (back["SRCHDU"], back.comments["SRCHDU"]) == ("SCI", "source HDU")


def test_source_cards_reformatted_without_room_lose_only_their_comment() -> None:
    # Free-format cards are legal; copied, their value is padded to column 30 and a long
    # comment no longer fits beside it.
    long_comment = "a comment that filled the card of the source: 55 chars."
    assert len(long_comment) == 55
    source = fits.Header.fromstring(
        f"{'EXPTIME = 90.0 / ' + long_comment:80}"
        f"{'OBJECT  = ' + chr(39) + 'a field' + chr(39) + ' / ' + long_comment:80}"
        f"{'CRPIX1  = 100.5 / reference pixel':80}"
        f"{'CRPIX2  = 200.5 / reference pixel':80}"
        f"{'LTV1    = -3.0 / offset of an earlier cut in its source':80}"
        f"{'COMMENT ' + 'x' * 72:80}"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        header = cutout_header(source, 10, 20)
    back = written(header)
    assert back["EXPTIME"] == 90.0 and back.comments["EXPTIME"] == ""
    assert back["OBJECT"] == "a field" and back.comments["OBJECT"] == ""
    assert (back["CRPIX1"], back["CRPIX2"]) == (90.5, 180.5)
    assert back.comments["CRPIX1"] == "reference pixel"
    assert (back["LTV1"], back["LTV2"]) == (-13.0, -20.0)
    assert back.comments["LTV2"] == "offset of this cut in the source"
    assert back["COMMENT"][0] == "x" * 72


def test_primary_cards_take_value_and_comment() -> None:
    long_name = "cutout-service " + "x" * 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = write_fits([], {"ORIGIN": (long_name, "IVOA SODA 1.0 cutout service"), "NCUTOUTS": (0, "none"),
                               "PLAIN": "value"})
    with fits.open(io.BytesIO(body)) as hdul:
        head = hdul[0].header
        assert head["ORIGIN"] == long_name and head.comments["ORIGIN"] == "IVOA SODA 1.0 cutout service"
        assert (head["NCUTOUTS"], head.comments["NCUTOUTS"], head["PLAIN"]) == (0, "none", "value")


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i2", "u2", "<i4", ">u4", "i8", "u8", ">f4", "<f4", "<f8", "?"])
def test_pixels_of_every_type_come_back_as_they_were(dtype: str) -> None:
    rng = np.random.default_rng(1)
    data = (rng.integers(0, 2, (7, 5)) if dtype == "?" else
            rng.normal(0, 1e3, (7, 5)) if dtype[-2] == "f" else
            rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (7, 5), dtype=np.dtype(dtype).newbyteorder('='),
                         endpoint=True)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        body = write_fits([(data, fits.Header()), (data[2:5, 1:2], fits.Header())], {})
    assert len(body) % 2880 == 0
    with fits.open(io.BytesIO(body)) as hdul:
        hdul.verify("exception")
        assert np.array_equal(hdul[1].data, data) and np.array_equal(hdul[2].data, data[2:5, 1:2])
        if dtype != "?":
            assert hdul[1].data.dtype.newbyteorder("=") == np.dtype(dtype).newbyteorder("=")


def test_the_file_is_what_astropy_writes() -> None:
    data = np.arange(12, dtype=">f4").reshape(3, 4)
    header = fits.Header([("OBJECT", "m13", "a globular cluster"), ("EXPTIME", 12.5)])
    ours = write_fits([(data, header)], {"ORIGIN": ("here", "who wrote it")})
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = ("here", "who wrote it")
    theirs = io.BytesIO()
    fits.HDUList([primary, fits.ImageHDU(data, header)]).writeto(theirs)
    assert ours == theirs.getvalue()


def test_native_pixels_are_written_big_endian_and_left_as_they_were() -> None:
    data = np.arange(6, dtype="<f4").reshape(2, 3)
    same = data[::-1, ::2]  # not contiguous: copied, not swapped
    body = write_fits([(data, fits.Header()), (same, fits.Header()), (data, fits.Header())], {})
    assert np.array_equal(data, np.arange(6, dtype="<f4").reshape(2, 3)) and data.dtype == np.dtype("<f4")
    with fits.open(io.BytesIO(body)) as hdul:
        assert np.array_equal(hdul[1].data, data) and np.array_equal(hdul[3].data, data)
        assert np.array_equal(hdul[2].data, same)


def test_record_valued_cards_are_copied_as_they_are() -> None:
    from astropy.io import fits

    from renderers.fits import cutout_cards

    source = fits.Header()
    source["CTYPE1"] = "RA---TAN-SIP"
    source.append(fits.Card.fromstring("DP1     = 'NAXES: 2'"))
    source.append(fits.Card.fromstring("DP1     = 'AXIS.1: 1'"))
    images = cutout_cards(source, 0, 0).images()
    assert any(i.startswith("DP1     = 'NAXES: 2'") for i in images)
    assert any(i.startswith("DP1     = 'AXIS.1: 1'") for i in images)
    assert not any("HIERARCH" in i for i in images)
    header = fits.Header.fromstring("".join(images))
    assert header["DP1.NAXES"] == 2 and header["DP1.AXIS.1"] == 1


@pytest.mark.parametrize("seed", range(4))
def test_card_images_made_without_astropy_are_the_ones_astropy_makes(seed: int) -> None:
    """The short-string and float cards formatted here (SRCBOX, REGION, CRPIX, LTV: new on
    every cut) are character for character what ``fits.Card`` makes."""
    from renderers.fits import _card_image, card_image

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcXYZ0189 []:,.-+()/!#&*'"))
    for _ in range(3000):
        value: object = "".join(rng.choice(letters, size=int(rng.integers(0, 72))))
        if rng.random() < 0.3:
            value = float(rng.normal(0, 10.0 ** rng.integers(-12, 14)))
        comment = "".join(rng.choice(letters[:-1], size=int(rng.integers(0, 60))))
        keyword = str(rng.choice(["SRCBOX", "REGION", "A", "CRPIX1", "DATASET8", "HISTORY", "COMMENT"]))
        assert card_image(keyword, value, comment) == _card_image(keyword, value, comment), (keyword, value, comment)
