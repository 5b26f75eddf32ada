"""The peer in bench/serving.py: LitServe serving the same artifact through the same compiled
predictor as ChannelHub (the PNG in, batched predict, the full probability vector out).

The PNG comes as JSON `{"image_base64": ...}`: LitServe 0.2.19 hands a multipart upload to its
inference process by pickling the form, which fails for an uploaded file, so JSON is its working
upload. (ChannelHub gets the same PNGs as multipart uploads, the costlier parse of the two.)"""

from __future__ import annotations

import base64

import litserve as ls
import numpy as np

from core.ml.images import decode_image, fit_to_shape
from core.ml.inference import Predictor


class DigitsAPI(ls.LitAPI):
    """Decode and fit each upload, predict in batches, answer the class and its probabilities."""

    def __init__(self, model_path: str, **batching) -> None:
        super().__init__(**batching)
        self.model_path = model_path

    def setup(self, device: str) -> None:
        self.predictor = Predictor(self.model_path)

    def decode_request(self, request: dict) -> np.ndarray:
        data = base64.b64decode(request["image_base64"])
        return fit_to_shape(decode_image(data), self.predictor.input_shape)

    def batch(self, inputs: list) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.predictor.predict_batch(x)

    def unbatch(self, output: np.ndarray) -> list:
        return list(output)

    def encode_response(self, probs: np.ndarray) -> dict:
        index = int(probs.argmax())
        return {"class_index": index, "confidence": float(probs[index]),
                "probabilities": [float(p) for p in probs]}  # fmt: skip


def run_litserve(model_path: str, port: int, batch: int, timeout_s: float) -> None:
    """LitServe with batching on and its fast queue, one inference worker on the CPU."""
    api = DigitsAPI(model_path, max_batch_size=batch, batch_timeout=timeout_s)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, fast_queue=True)
    server.run(host="127.0.0.1", port=port, log_level="warning", generate_client_file=False)
