"""A model answering batches over a pipe, run in its package's environment.

``python -m geomlops.ml.serve_worker MODEL_URI`` loads an MLflow pyfunc model (any URI
MLflow loads: ``s3://…``, ``mlflow-artifacts:/…``, ``runs:/…``, a folder) and answers, on
stdin/stdout, one batch at a time: MLflow's own ``env_manager`` idea (a scoring process in
the model's environment), with arrays as ``.npy`` frames instead of JSON over HTTP, so a
float32 tile crosses the pipe as its bytes and no port is opened.

A frame is one kind byte, an 8-byte big-endian length and the payload:

- the worker first sends ``R`` (ready, JSON ``{"model": uri}``) or ``E`` (the load failed);
- then, for each ``B`` frame it reads (a float32 ``N x C x H x W`` ``.npy``), it answers ``A``
  (the model's ``N x K x H x W`` float32 ``.npy``) or ``E`` (UTF-8 error text; the worker
  stays up for the next batch);
- end of input ends the worker.

Anything a model or MLflow prints goes to stderr: the worker moves file descriptor 1 there
before loading, and answers on a private copy of the original stdout.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import traceback
from typing import IO, Any

import numpy as np

READY, BATCH, ANSWER, ERROR = b"R", b"B", b"A", b"E"
"""Frame kinds (see the module docstring)."""
_HEADER = struct.Struct(">cQ")


def write_frame(stream: IO[bytes], kind: bytes, payload: bytes) -> None:
    """Write one frame and flush it."""
    stream.write(_HEADER.pack(kind, len(payload)))
    stream.write(payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> tuple[bytes, bytes] | None:
    """The next (kind, payload); None at end of input (also mid-frame: the peer died)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    kind, length = _HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        return None
    return kind, payload


def to_npy(array: np.ndarray) -> bytes:
    """``array`` as ``.npy`` bytes (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def from_npy(payload: bytes) -> np.ndarray:
    """The array of ``.npy`` bytes (pickled objects are refused)."""
    return np.load(io.BytesIO(payload), allow_pickle=False)


def serve(model: Any, inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer ``B`` frames with ``model.predict`` until end of input."""
    while (frame := read_frame(inp)) is not None:
        kind, payload = frame
        if kind != BATCH:
            write_frame(out, ERROR, f"unexpected frame kind {kind!r}".encode())
            continue
        try:
            answer = np.asarray(model.predict(from_npy(payload)), dtype="float32")
        except Exception as error:  # the batch failed, the worker did not: say why
            traceback.print_exc(file=sys.stderr)
            write_frame(out, ERROR, f"{type(error).__name__}: {error}".encode())
            continue
        write_frame(out, ANSWER, to_npy(answer))


def main(argv: list[str] | None = None) -> int:
    """Load the model named on the command line and serve batches on stdin/stdout."""
    args = sys.argv[1:] if argv is None else argv
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # prints of MLflow or the model go to stderr, never into a frame
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    if len(args) != 1:
        write_frame(out, ERROR, b"usage: python -m geomlops.ml.serve_worker MODEL_URI")
        return 2
    uri = args[0]
    try:
        import mlflow.pyfunc

        model = mlflow.pyfunc.load_model(uri)
    except Exception as error:
        traceback.print_exc(file=sys.stderr)
        write_frame(out, ERROR, f"cannot load {uri}: {type(error).__name__}: {error}".encode())
        return 1
    write_frame(out, READY, json.dumps({"model": uri, "python": sys.executable}).encode())
    serve(model, inp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
