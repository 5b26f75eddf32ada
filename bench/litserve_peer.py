"""The peer in bench/serving.py: LitServe serving the same artifact through the same compiled
predictor as ChannelHub (multipart PNG in, batched predict, the full probability vector out)."""

from __future__ import annotations

import litserve as ls
import numpy as np
from fastapi import Request

from core.ml.images import decode_image, fit_to_shape
from core.ml.inference import Predictor


class DigitsAPI(ls.LitAPI):
    """Decode and fit each upload, predict in batches, answer the class and its probabilities."""

    def __init__(self, model_path: str, **batching) -> None:
        super().__init__(**batching)
        self.model_path = model_path

    def setup(self, device: str) -> None:
        self.predictor = Predictor(self.model_path)

    def decode_request(self, request: Request) -> np.ndarray:
        data = request["file"].file.read()
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
