"""Ctrl-C interrupts attention flow within about a second, even in the middle of a long compiled solve,
and the CLI then exits 130 at once instead of waiting for the solves still running."""

from __future__ import annotations

import _thread
import signal
import threading
import time

import pytest
import torch

from attnlens.methods import attention_flow, estimate_flow_seconds


@pytest.fixture
def ctrl_c_raises():
    """Python's own SIGINT handler, whatever the launcher left: a shell starting pytest in the background
    (`cmd &` without job control) makes SIGINT ignored, and then `interrupt_main` does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_interrupts_a_long_flow_solve_promptly(ctrl_c_raises):
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    attn = torch.softmax(2 * torch.randn(2, 6, 80, 80, generator=generator, dtype=torch.float64), dim=-1)
    assert estimate_flow_seconds([80], 6, every_layer=False) > 3  # each solve seconds long
    timer = threading.Timer(0.5, _thread.interrupt_main)  # what Ctrl-C does to the main thread
    start = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        attention_flow(attn, layer=-1, workers=2)  # two solves running in the pool when Ctrl-C comes
    assert time.monotonic() - start < 1.5


def test_cli_exits_130_without_waiting_for_worker_threads(monkeypatch, capsys):
    from attnlens import cli

    exits = []
    monkeypatch.setattr(cli.os, "_exit", lambda code: exits.append(code))

    def interrupted(args):
        threading.Thread(target=time.sleep, args=(0.3,)).start()  # a solve still running
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", lambda real=cli.build_parser: _with_run(real(), interrupted))
    assert cli.main(["explain", "--model", "m", "text"]) == 130
    assert exits == [130] and "interrupted" in capsys.readouterr().err


def _with_run(parser, run):
    parser.set_defaults()
    original = parser.parse_args

    def parse_args(argv=None):
        args = original(argv)
        args.run = run
        return args

    parser.parse_args = parse_args
    return parser
