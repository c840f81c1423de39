"""Writing a numpy array as a .npy file whose failure says why."""

from __future__ import annotations

from typing import IO

import numpy as np


def write_npy(handle: IO[bytes], array: np.ndarray) -> None:
    """The bytes `np.save` writes, written by Python's file object: numpy's own write reports a full disk as
    "N requested and M written", with no errno, reason or file name."""
    data = np.ascontiguousarray(array)
    np.lib.format.write_array_header_1_0(handle, np.lib.format.header_data_from_array_1_0(data))
    handle.write(data.data)
