"""Camera images -> model-resolution rgb8: decode (JPEG or raw), then resize-with-pad, the way openpi does it.

Every image path into the policy (ROS aggregator, dataset readers, the direct sim loop) goes through these functions,
so training and deployment see identically prepared pixels. Images are ``uint8 [H, W, 3]`` RGB throughout.

Resize-with-pad follows openpi's ``image_tools.resize_with_pad``: scale by ``max(w / W, h / H)`` so the whole image
fits, truncate the scaled size to int, paste it centred (offsets truncated) on a black canvas. openpi resizes with
PIL bilinear, which antialiases when shrinking; OpenCV's INTER_AREA (shrink) and INTER_LINEAR (enlarge) are the
closest OpenCV equivalents, so pixel values can differ from openpi by a few levels but geometry is identical.
"""

from __future__ import annotations

import cv2
import numpy as np

# Raw sensor_msgs/Image encodings we accept: channels and how to reach RGB.
_RAW_ENCODINGS = {
    "rgb8": (3, None),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
}


class ImageDecodeError(ValueError):
    """An image message could not be turned into an RGB array (corrupt JPEG, wrong size, unknown encoding)."""


def decode_jpeg(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """JPEG (or PNG) bytes -> ``uint8 [H, W, 3]`` RGB. Raises ImageDecodeError on corrupt or empty data."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    if buf.size == 0:
        raise ImageDecodeError("compressed image is empty")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(f"compressed image ({buf.size} bytes) could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs Image (rgb8/bgr8/rgba8/bgra8/mono8) or CompressedImage (JPEG/PNG) -> ``uint8 [H, W, 3]`` RGB.

    Duck-typed (a CompressedImage has ``format``), so rclpy messages in the aggregator and rosbags messages read
    from a bag (``wp-data from-bags``) take the same path.
    """
    if hasattr(msg, "format"):
        return decode_jpeg(msg.data)
    return decode_raw(msg.data, msg.height, msg.width, msg.encoding, msg.step)


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """``uint8 [H, W, 3]`` RGB -> JPEG bytes (what a camera driver's CompressedImage carries)."""
    rgb = _check_rgb(rgb)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageDecodeError("JPEG encoding failed")
    return buf.tobytes()


def decode_raw(data: bytes | bytearray | memoryview, height: int, width: int, encoding: str, step: int) -> np.ndarray:
    """sensor_msgs/Image fields -> ``uint8 [height, width, 3]`` RGB; checks encoding, step and buffer size."""
    if encoding not in _RAW_ENCODINGS:
        raise ImageDecodeError(f"unsupported image encoding {encoding!r}; supported: {sorted(_RAW_ENCODINGS)}")
    channels, conversion = _RAW_ENCODINGS[encoding]
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image has no pixels ({height}x{width})")
    if step < width * channels:
        raise ImageDecodeError(f"step {step} is smaller than width*channels = {width * channels} ({encoding})")
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    if buf.size != step * height:
        raise ImageDecodeError(f"image data has {buf.size} bytes, expected step*height = {step * height}")
    img = buf.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    return np.ascontiguousarray(img) if conversion is None else cv2.cvtColor(img, conversion)


def resize_with_pad(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``uint8 [h, w, 3]`` -> ``uint8 [height, width, 3]``: keep aspect ratio, pad with black (openpi semantics)."""
    rgb = _check_rgb(rgb)
    cur_h, cur_w = rgb.shape[:2]
    if (cur_h, cur_w) == (height, width):
        return rgb
    ratio = max(cur_w / width, cur_h / height)
    new_h, new_w = max(1, int(cur_h / ratio)), max(1, int(cur_w / ratio))
    interp = cv2.INTER_AREA if ratio > 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = max(0, int((height - new_h) / 2)), max(0, int((width - new_w) / 2))
    out[top : top + new_h, left : left + new_w] = resized
    return out


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageDecodeError(f"expected a uint8 [H, W, 3] RGB image, got {arr.dtype} {arr.shape}")
    return arr
