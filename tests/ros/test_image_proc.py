import numpy as np
import pytest

from wp_policy.image_proc import ImageDecodeError, decode_jpeg, decode_raw, encode_jpeg, resize_with_pad


def smooth_image(h=240, w=320):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (h + w)], axis=-1).astype(np.uint8)


def test_jpeg_round_trip_is_rgb():
    img = smooth_image()
    out = decode_jpeg(encode_jpeg(img, quality=95))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 3  # channel order preserved (a BGR swap would be ~60)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff\xe0 not really a jpeg", bytes(range(256)) * 4])
def test_corrupt_jpeg_raises(data):
    with pytest.raises(ImageDecodeError):
        decode_jpeg(data)


def test_decode_raw_encodings_and_step_padding():
    img = smooth_image(4, 5)
    bgr_padded = np.zeros((4, 5 * 3 + 2), dtype=np.uint8)  # 2 bytes of row padding
    bgr_padded[:, :15] = img[..., ::-1].reshape(4, 15)
    assert np.array_equal(decode_raw(bgr_padded.tobytes(), 4, 5, "bgr8", 17), img)
    assert np.array_equal(decode_raw(img.tobytes(), 4, 5, "rgb8", 15), img)
    mono = decode_raw(img[..., 0].tobytes(), 4, 5, "mono8", 5)
    assert np.array_equal(mono[..., 1], img[..., 0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"encoding": "16UC1"}, "unsupported image encoding"),
        ({"step": 10}, "step 10 is smaller"),
        ({"height": 5}, "expected step\\*height"),
        ({"height": 0}, "no pixels"),
    ],
)
def test_decode_raw_rejects_bad_fields(kwargs, match):
    args = {"height": 4, "width": 5, "encoding": "rgb8", "step": 15} | kwargs
    with pytest.raises(ImageDecodeError, match=match):
        decode_raw(smooth_image(4, 5).tobytes(), **args)


def test_resize_with_pad_geometry_matches_openpi():
    out = resize_with_pad(smooth_image(240, 320), 224, 224)
    # openpi: ratio = max(320/224, 240/224); resized 224 x int(240/ratio) = 168; pad int((224-168)/2) = 28 rows
    assert out.shape == (224, 224, 3)
    assert not out[:28].any() and not out[28 + 168 :].any()
    assert out[28].any() and out[28 + 167].any()
    tall = resize_with_pad(smooth_image(300, 100), 224, 224)
    cols = np.flatnonzero(tall.any(axis=(0, 2)))
    assert (cols[0], cols[-1]) == (75, 75 + 74 - 1)  # width int(100 / (300/224)) = 74, left pad int(150 / 2) = 75


def openpi_resize_with_pad(img, height, width):
    """openpi's reference (PIL bilinear), inlined: the behaviour resize_with_pad reproduces."""
    from PIL import Image

    pil = Image.fromarray(img)
    ratio = max(pil.width / width, pil.height / height)
    rh, rw = int(pil.height / ratio), int(pil.width / ratio)
    resized = pil.resize((rw, rh), resample=Image.BILINEAR)
    canvas = Image.new(resized.mode, (width, height), 0)
    canvas.paste(resized, (max(0, int((width - rw) / 2)), max(0, int((height - rh) / 2))))
    return np.asarray(canvas)


@pytest.mark.parametrize("shape", [(240, 320), (480, 640), (100, 100), (120, 90)])
def test_resize_with_pad_pixels_close_to_openpi(shape):
    img = smooth_image(*shape)
    ours, ref = resize_with_pad(img, 224, 224).astype(int), openpi_resize_with_pad(img, 224, 224).astype(int)
    assert ours.shape == ref.shape
    assert np.mean(np.abs(ours - ref)) < 2.0 and np.percentile(np.abs(ours - ref), 99) <= 6


def test_resize_rejects_non_rgb():
    with pytest.raises(ImageDecodeError, match="uint8"):
        resize_with_pad(np.zeros((10, 10), dtype=np.uint8), 224, 224)
    with pytest.raises(ImageDecodeError, match="uint8"):
        resize_with_pad(np.zeros((10, 10, 3), dtype=np.float32), 224, 224)
