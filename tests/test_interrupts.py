"""Stop signals become `Interrupted` inside `stop_on_signals()` and nowhere else (no Ray: the pipeline test sends
real signals to a real `syncse pipeline`)."""

from __future__ import annotations

import os
import signal

import pytest

from syncse_ray.runtime.interrupts import Interrupted, reclaim_signals, resume_hint, stop_on_signals


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_raises_interrupted_with_the_shells_exit_code(sig, code):
    before = signal.getsignal(sig)
    with pytest.raises(Interrupted, match=f"stopped by {sig.name}") as caught, stop_on_signals():
        os.kill(os.getpid(), sig)
        signal.sigtimedwait([], 0.1)
    assert caught.value.exit_code == code and caught.value.name == sig.name
    assert isinstance(caught.value, KeyboardInterrupt)  # what Ray Data and Ray Train unwind on
    assert signal.getsignal(sig) is before  # the previous handler is back


def test_reclaim_puts_the_handler_back_only_inside_the_block():
    with stop_on_signals():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what ray.init's own handler does to ours
        reclaim_signals()
        with pytest.raises(Interrupted, match="stopped by SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.1)
    before = signal.getsignal(signal.SIGTERM)
    reclaim_signals()
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_resume_line_names_the_signal_and_the_folder():
    line = resume_hint("runs/quickstart", Interrupted(signal.SIGTERM))
    assert "SIGTERM" in line and "runs/quickstart" in line and "run the same command again" in line
