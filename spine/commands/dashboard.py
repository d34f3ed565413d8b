"""``spine dashboard``: a read-only, live web view of this repository's runs."""

from __future__ import annotations

import click


@click.command("dashboard")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Port to listen on (default: 0, a free one)."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but a loopback address shows your runs to the network.",
)
def command(port: int, host: str) -> int:
    """Serve a web page that shows every run of this repository and follows them as they progress.

    \b
    Read-only: it answers GET and HEAD only, serves nothing but views of the runs under spine's
    state directory, and writes no state. It prints its address and serves until Ctrl-C (exit 0).

    \b
    Example:
      spine dashboard              # then open the address it prints
      spine dashboard --port 8765
    """
    from spine import api
    from spine.base.process import sigterm_as_interrupt

    ctx = api.context()
    board = api.dashboard(ctx, host=host, port=port)
    click.echo(f"spine dashboard: {board.url}  (read-only; Ctrl-C stops it)")
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        click.echo(f"spine: warning: listening on {host}: anyone who can reach it sees your runs", err=True)
    try:
        with sigterm_as_interrupt():
            board.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        board.shutdown()
    return 0
