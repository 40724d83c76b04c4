import struct

import numpy as np
import pytest
from PIL import Image

from stereodistill.data import formats
from stereodistill.errors import DataError

RNG = np.random.default_rng(0)


# -------------------------------------------------------------------------------------------- PFM
@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3)])
def test_pfm_round_trip(tmp_path, little_endian, shape):
    array = RNG.standard_normal(shape).astype(np.float32)
    array.flat[0] = np.inf
    path = tmp_path / "x.pfm"
    formats.write_pfm(path, array, little_endian=little_endian)
    back = formats.read_pfm(path)
    assert back.dtype == np.float32 and back.shape == shape
    np.testing.assert_array_equal(back, array)
    header = path.read_bytes()[:2]
    assert header == (b"PF" if len(shape) == 3 else b"Pf")


def _raw_pfm(magic: bytes, width: int, height: int, scale: str, rows_bottom_up: np.ndarray, fmt: str) -> bytes:
    return magic + f"\n{width} {height}\n{scale}\n".encode() + rows_bottom_up.astype(fmt).tobytes()


@pytest.mark.parametrize(("scale", "fmt"), [("-1.0", "<f4"), ("1.0", ">f4"), ("-0.5", "<f4")])
def test_pfm_reads_both_endiannesses_and_stores_rows_bottom_up(tmp_path, scale, fmt):
    image = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)  # top row first
    path = tmp_path / "x.pfm"
    path.write_bytes(_raw_pfm(b"Pf", 3, 2, scale, image[::-1], fmt))
    np.testing.assert_array_equal(formats.read_pfm(path), image)


def test_pfm_header_on_one_line_is_accepted(tmp_path):
    path = tmp_path / "x.pfm"
    path.write_bytes(b"Pf 2 1 -1.0\n" + np.array([7.0, 8.0], "<f4").tobytes())
    np.testing.assert_array_equal(formats.read_pfm(path), [[7.0, 8.0]])


@pytest.mark.parametrize("header", [b"Pf\r\n2 1\r\n-1.0\r\n", b"Pf\n2 1\n-1.0  \n", b"Pf\n2 1 \n-1.0 \r\n"])
def test_pfm_header_lines_ended_by_crlf_or_trailing_spaces_are_read_as_line_readers_do(tmp_path, header):
    path = tmp_path / "x.pfm"
    path.write_bytes(header + np.array([7.0, 8.0], "<f4").tobytes())
    np.testing.assert_array_equal(formats.read_pfm(path), [[7.0, 8.0]])
    assert formats.disparity_size(path) == (1, 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"P6\n2 2\n255\n" + bytes(12), "not a PFM file"),
        (b"Pf\nx 2\n-1.0\n" + bytes(16), "malformed PFM header"),
        (b"Pf\n0 2\n-1.0\n", "malformed PFM header"),
        (b"Pf\n2 2\n0\n" + bytes(16), "scale"),
        (b"Pf\n2 2\n-1.0\n" + bytes(15), "truncated"),
        (b"Pf\n2 2\n-1.0\n" + bytes(20), "expected 16"),
        (b"PF\n2 2\n-1.0\n" + bytes(16), "expected 48"),
        (b"", "not a PFM file"),
    ],
)
def test_malformed_pfm_names_file_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        formats.read_pfm(path)
    assert "bad.pfm" in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        formats.read_disparity(tmp_path / "nope.pfm")
    assert "nope.pfm" in str(info.value)


# -------------------------------------------------------------------------------------- KITTI PNG
def test_kitti_png_round_trip_and_zero_means_no_gt(tmp_path):
    disp = np.array([[0.0, 1.5, 200.25], [np.nan, -3.0, 0.001]], np.float32)
    path = tmp_path / "d.png"
    formats.write_png_disparity(path, disp)
    raw = np.asarray(Image.open(path))
    assert raw.dtype == np.uint16
    assert raw[0, 0] == 0 and raw[1, 0] == 0 and raw[1, 1] == 0  # unknown / negative → 0
    assert raw[1, 2] == 1  # tiny positive values stay "known"
    back = formats.read_disparity(path)
    np.testing.assert_allclose(back[0, 1:], [1.5, 200.25])
    assert back[1, 0] == 0
    np.testing.assert_allclose(formats.read_png_disparity(path, scale=128.0)[0, 1], 3.0)


def test_kitti_png_must_be_16_bit(tmp_path):
    path = tmp_path / "d8.png"
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(path)
    with pytest.raises(DataError, match="16-bit"):
        formats.read_png_disparity(path)


def test_kitti_png_too_large_disparity_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not fit"):
        formats.write_png_disparity(tmp_path / "d.png", np.full((1, 1), 300.0))


# ------------------------------------------------------------------------------------------ images
def test_rgb_png_and_jpeg(tmp_path):
    rgb = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    img = formats.read_image(tmp_path / "a.png")
    assert img.dtype == np.float32 and img.shape == (6, 8, 3)
    np.testing.assert_allclose(img, rgb / 255.0, atol=1e-7)
    Image.fromarray(np.full((6, 8, 3), 128, np.uint8)).save(tmp_path / "a.jpg", quality=95)
    jpg = formats.read_image(tmp_path / "a.jpg")
    assert jpg.shape == (6, 8, 3)
    np.testing.assert_allclose(jpg, 128 / 255.0, atol=2 / 255)


def test_grayscale_8_and_16_bit_repeat_to_three_channels(tmp_path):
    gray8 = RNG.integers(0, 256, (5, 4), dtype=np.uint8)
    Image.fromarray(gray8).save(tmp_path / "g8.png")
    img = formats.read_image(tmp_path / "g8.png")
    assert img.shape == (5, 4, 3)
    np.testing.assert_allclose(img[..., 2], gray8 / 255.0, atol=1e-7)
    gray16 = RNG.integers(0, 65536, (5, 4), dtype=np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    img16 = formats.read_image(tmp_path / "g16.png")
    np.testing.assert_allclose(img16[..., 0], gray16 / 65535.0, atol=1e-6)
    assert np.array_equal(img16[..., 0], img16[..., 1])


def _png16_rgb(path, array):
    import zlib

    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def test_16_bit_colour_png_reads_in_range(tmp_path):
    array = RNG.integers(0, 65536, (3, 4, 3), dtype=np.uint16)
    _png16_rgb(tmp_path / "c16.png", array)
    img = formats.read_image(tmp_path / "c16.png")
    assert img.shape == (3, 4, 3)
    np.testing.assert_allclose(img, array / 65535.0, atol=1 / 255 + 1e-6)


def test_rgba_drops_alpha_and_palette_expands(tmp_path):
    rgba = RNG.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_allclose(formats.read_image(tmp_path / "a.png"), rgba[..., :3] / 255.0, atol=1e-7)
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "p.png")
    assert formats.read_image(tmp_path / "p.png").shape == (4, 4, 3)


def test_corrupt_image_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match="not a readable image") as info:
        formats.read_image(path)
    assert "broken.png" in str(info.value)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(DataError, match="not a readable image"):
        formats.read_image(tmp_path / "text.png")


def test_write_image_round_trip(tmp_path):
    img = RNG.random((4, 5, 3)).astype(np.float32)
    formats.write_image(tmp_path / "w.png", img)
    np.testing.assert_allclose(formats.read_image(tmp_path / "w.png"), img, atol=0.5 / 255 + 1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["w.png"]  # no temp file left behind


# ----------------------------------------------------------------------------------- npy & masks
def test_npy_disparity_round_trip_and_shapes(tmp_path):
    disp = RNG.random((3, 4)).astype(np.float64) * 10
    np.save(tmp_path / "d.npy", disp)
    back = formats.read_disparity(tmp_path / "d.npy")
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, disp, rtol=1e-6)
    np.save(tmp_path / "d1.npy", disp[None])
    assert formats.read_disparity(tmp_path / "d1.npy").shape == (3, 4)
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4)))
    with pytest.raises(DataError, match="2-D"):
        formats.read_disparity(tmp_path / "bad.npy")


def test_pickled_npy_is_refused_not_executed(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"not a plain \.npy"):
        formats.read_disparity(tmp_path / "obj.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"junk\.npy"):
        formats.read_disparity(tmp_path / "junk.npy")


def test_unknown_disparity_suffix(tmp_path):
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(DataError, match="unknown disparity format"):
        formats.read_disparity(tmp_path / "d.txt")


def test_mask_conventions(tmp_path):
    middlebury = np.array([[255, 128, 0]], np.uint8)
    Image.fromarray(middlebury).save(tmp_path / "m.png")
    np.testing.assert_array_equal(formats.read_mask(tmp_path / "m.png"), [[True, False, False]])
    Image.fromarray(np.array([[1, 0, 1]], np.uint8)).save(tmp_path / "b.png")
    np.testing.assert_array_equal(formats.read_mask(tmp_path / "b.png"), [[True, False, True]])
    np.save(tmp_path / "m.npy", np.array([[True, False]]))
    np.testing.assert_array_equal(formats.read_mask(tmp_path / "m.npy"), [[True, False]])
    scaled = (("x257.png", middlebury.astype(np.uint16) * 257), ("x256.png", middlebury.astype(np.uint16) * 256))
    for name, values in (*scaled, ("plain16.png", middlebury)):
        Image.fromarray(values.astype(np.uint16)).save(tmp_path / name)  # 16-bit: occluded is not evaluated
        np.testing.assert_array_equal(formats.read_mask(tmp_path / name), [[True, False, False]], err_msg=name)


def test_disparity_size_reads_headers_only_in_every_format(tmp_path):
    disp = np.ones((5, 7), np.float32)
    formats.write_pfm(tmp_path / "d.pfm", disp)
    formats.write_png_disparity(tmp_path / "d.png", disp)
    np.save(tmp_path / "d.npy", disp)
    for name in ("d.pfm", "d.png", "d.npy"):
        assert formats.disparity_size(tmp_path / name) == (5, 7), name
    (tmp_path / "bad.pfm").write_bytes(b"not a pfm")
    with pytest.raises(DataError, match=r"bad\.pfm: not a PFM file"):
        formats.disparity_size(tmp_path / "bad.pfm")
    (tmp_path / "cut.pfm").write_bytes((tmp_path / "d.pfm").read_bytes()[:-9])  # cut short: named from its size
    with pytest.raises(DataError, match=r"cut\.pfm: PFM data has 131 bytes, expected 140 .* \(file truncated\)$"):
        formats.disparity_size(tmp_path / "cut.pfm")


def test_a_header_claiming_a_huge_image_is_a_clear_error_not_pillows_bomb_error(tmp_path):
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 30000, 30000)  # IHDR width and height: beyond Pillow's bomb limit
    data[29:33] = struct.pack(">I", __import__("zlib").crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    for read in (formats.read_image, formats.read_mask, formats.image_size):
        with pytest.raises(DataError, match=r"bomb\.png: not a readable image"):
            read(path)


def test_a_very_large_image_is_read_with_a_warning_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 144 px lies between Pillow's warning and error sizes
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(path)
    for read in (formats.read_image, formats.image_size):
        with pytest.warns(Image.DecompressionBombWarning, match=r"big\.png: a very large image, read anyway"):
            read(path)


def test_npy_ground_truth_with_a_corrupt_header_or_a_plane_axis(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((4, 6), np.float32))
    data = bytearray((tmp_path / "d.npy").read_bytes())
    data[20] = ord("(")  # inside the header's dict: numpy's parser raises tokenize's error
    (tmp_path / "d.npy").write_bytes(bytes(data))
    for read in (formats.read_disparity, formats.disparity_size):
        with pytest.raises(DataError, match=r"d\.npy: not a readable"):
            read(tmp_path / "d.npy")
    for shape in ((1, 4, 6), (4, 6, 1)):  # what the reader accepts, the size check accepts
        np.save(tmp_path / "p.npy", np.ones(shape, np.float32))
        assert formats.disparity_size(tmp_path / "p.npy") == formats.read_disparity(tmp_path / "p.npy").shape
    np.save(tmp_path / "huge.npy", np.ones((32, 64), np.float32))  # a header claiming 763 GiB: an error, not a try
    data = (tmp_path / "huge.npy").read_bytes()
    (tmp_path / "huge.npy").write_bytes(data.replace(b"(32, 64), }" + b" " * 8, b"(3200000, 64000), }", 1))
    with pytest.raises(DataError, match=r"huge\.npy: not a"):
        formats.read_disparity(tmp_path / "huge.npy")
    np.save(tmp_path / "v.npy", np.ones((2, 4, 6), np.float32))
    with pytest.raises(DataError, match="2-D"):
        formats.disparity_size(tmp_path / "v.npy")


def test_a_view_stored_turned_with_its_exif_orientation_is_read_upright(tmp_path):
    image_size, read_image = formats.image_size, formats.read_image
    upright = (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 3).astype(np.uint8)  # 4 rows, 6 columns
    stored = np.rot90(upright, k=1)  # a camera held on its side: 6 rows stored, turned a quarter
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "turned.png", exif=exif)
    assert image_size(tmp_path / "turned.png", view=True) == (4, 6)  # from the header, as read_image gives it
    assert image_size(tmp_path / "turned.png") == (6, 4)  # a mask or ground truth: as stored, as they are read
    assert read_image(tmp_path / "turned.png").shape == (4, 6, 3)
    np.testing.assert_array_equal(np.round(read_image(tmp_path / "turned.png") * 255).astype(np.uint8), upright)


def test_the_header_size_of_a_png_does_not_decode_it(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    formats.write_image(tmp_path / "view.png", RNG.random((8, 12, 3)))

    def no_decoding(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    assert formats.image_size(tmp_path / "view.png", view=True) == (8, 12)  # EXIF is not searched past the header
