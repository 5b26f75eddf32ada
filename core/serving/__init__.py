"""Serving API process: FastAPI app, model cache, request images, prediction log."""
