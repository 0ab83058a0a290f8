"""Request limits that the inference Lambda, the serving container and staging agree on."""

from __future__ import annotations

# Predictions a request gets when it names no top_k, and the most it may ask for.
DEFAULT_TOP_K = 5
MAX_TOP_K = 100

# 40 MP covers any phone or DSLR photo; beyond it a small file is almost surely a decompression bomb.
# Serving refuses more; staging may be stricter (its decode runs many at once) but never looser, or a
# model would train on images its endpoint refuses.
MAX_IMAGE_PIXELS = 40_000_000

# Serverless endpoints take at most 4 MB per invocation, so the Lambda never sends more.
MAX_ENDPOINT_PAYLOAD_BYTES = 4 * 1024 * 1024
# What the serving container reads in one request: real-time endpoints take 6 MB, and a JSON body's
# base64 costs 4/3 of the image.
MAX_SERVING_BODY_BYTES = 8 * 1024 * 1024
