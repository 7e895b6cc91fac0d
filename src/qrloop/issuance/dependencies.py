"""The issuance area's services, built once per process and provided to its routes."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from litestar.datastructures import State

from qrloop.codes.verify_pool import VerifierPool


@contextlib.contextmanager
def serving(state: State) -> Iterator[None]:
    """The processes that verify voided codes in bulk, in `state` until the block ends."""
    state.verifiers = verifiers = VerifierPool()
    try:
        yield
    finally:
        verifiers.close()


def provide_verifiers(state: State) -> VerifierPool:
    verifiers: VerifierPool = state.verifiers
    return verifiers
