"""Serving the demo's logs: TensorBoard on 127.0.0.1 until Ctrl-C, with the DeepVID deep links
printed on the port it actually got; and the demo's one way to talk to the user."""

from __future__ import annotations

import time


def say(msg: str) -> None:
    print(msg, flush=True)


def serve(logdir: str, port: int, links: dict[str, str] | None = None) -> int:
    """Serve TensorBoard on 127.0.0.1 until Ctrl-C (a free port if ``port`` is taken);
    ``links``: {what: query string} of DeepVID deep links to print with the actual port."""
    from tensorboard import program

    def launch(p: int) -> str:
        tb = program.TensorBoard()
        tb.configure(argv=[None, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(p)])
        return tb.launch()

    try:
        url = launch(port)
    except program.TensorBoardPortInUseError:
        say(f"port {port} is taken; using a free one")
        url = launch(0)
    url = url.rstrip("/")
    lines = [f"\nTensorBoard is serving {logdir}", f"  open {url}/#deepvid  (the DeepVID tab)"]
    lines += [f"  {what}: {url}/?{query}#deepvid" for what, query in (links or {}).items()]
    say("\n".join(lines + ["Press Ctrl-C to stop."]))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        say("stopped")
    return 0
