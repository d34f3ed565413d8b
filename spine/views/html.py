"""The pieces every HTML page of spine shares: escaping with secrets masked, the page frame, the style.

A page is one self-contained document: its style and script are inline, and its Content Security
Policy forbids the browser to fetch anything (``default-src 'none'``), so a report opened from a CI
artifact or a mail makes no network request, even if some text in it tried to.
"""

from __future__ import annotations

import html

from spine.base.redact import redact_text
from spine.base.version import __version__

# Nothing may be loaded from anywhere; only the page's own inline style and script run. The
# dashboard's page adds connect-src 'self': it reads its own views and event stream, nothing else.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

STATUS_WORDS = ("succeeded", "failed", "blocked", "canceled", "running", "interrupted", "planned")


def esc(value: object) -> str:
    """``value`` as HTML text: secrets masked first, then escaped (quotes too, for attributes)."""
    return html.escape(redact_text("" if value is None else str(value)), quote=True)


def badge(status: str) -> str:
    return f'<span class="badge s-{esc(status)}">{esc(status)}</span>'


def page(title: str, body: str, *, script: str = "", connect_self: bool = False) -> str:
    """A whole HTML document around ``body``; every secret in it masked once more on the way out."""
    policy = CSP + ("; connect-src 'self'" if connect_self else "")
    doc = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<footer>spine {esc(__version__)}</footer>\n"
        + (f"<script>{script}</script>\n" if script else "")
        + "</body></html>\n"
    )
    return redact_text(doc)


STYLE = """
:root { --fg:#1d232a; --muted:#5b6570; --bg:#ffffff; --panel:#f5f7f9; --line:#dde2e7;
  --ok:#1a7f37; --bad:#cf222e; --blocked:#8250df; --cancel:#9a6700; --run:#0969da; --plan:#6e7781;
  --add:#dafbe1; --del:#ffebe9; --hunk:#ddf4ff; }
@media (prefers-color-scheme: dark) { :root { --fg:#e6edf3; --muted:#8d96a0; --bg:#0d1117; --panel:#161b22;
  --line:#30363d; --add:#12361f; --del:#3d1418; --hunk:#0c2d4a; } }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg);
  margin: 0 auto; max-width: 1200px; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.5rem; margin: 0 0 .2rem; } h2 { font-size: 1.2rem; margin: 2rem 0 .6rem; }
h3 { font-size: 1rem; margin: 1.2rem 0 .4rem; } code, pre, .mono { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
a { color: var(--run); } .muted, footer { color: var(--muted); } footer { margin-top: 3rem; font-size: 12px; }
.sub { color: var(--muted); margin: 0 0 .6rem; }
.badge { display: inline-block; padding: 0 .5em; border-radius: 1em; font-size: 12px; font-weight: 600;
  border: 1px solid currentColor; white-space: nowrap; }
.s-succeeded, .s-passed, .s-PASS, .s-ok, .s-complete { color: var(--ok); } .s-failed, .s-FAIL, .s-violated { color: var(--bad); }
.s-blocked { color: var(--blocked); } .s-canceled, .s-interrupted, .s-WARN, .s-fixed { color: var(--cancel); }
.s-running { color: var(--run); } .s-planned, .s-not-run, .s-skipped { color: var(--plan); }
.counts { list-style: none; padding: 0; margin: .4rem 0; display: flex; gap: .4rem; flex-wrap: wrap; }
.counts button { font: inherit; background: none; border: 0; padding: 0; cursor: pointer; }
table { border-collapse: collapse; width: 100%; margin: .3rem 0; }
th, td { text-align: left; vertical-align: top; padding: .3rem .5rem; border-bottom: 1px solid var(--line); }
td { overflow-wrap: anywhere; }
th { font-size: 12px; color: var(--muted); font-weight: 600; white-space: nowrap; }
table.lanes td:first-child, table.runs td:first-child { overflow-wrap: normal; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .4rem 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
section.lane { border: 1px solid var(--line); border-radius: 8px; padding: .2rem 1rem 1rem; margin: 1rem 0; }
section.lane > h2 { margin-top: .8rem; }
pre { background: var(--panel); padding: .6rem .8rem; border-radius: 6px; overflow-x: auto; margin: .3rem 0;
  white-space: pre; max-height: 32rem; overflow-y: auto; }
details > summary { cursor: pointer; color: var(--muted); margin: .3rem 0; }
pre.diff span { display: block; } pre.diff .add { background: var(--add); } pre.diff .del { background: var(--del); }
pre.diff .hunk { background: var(--hunk); } pre.diff .file { font-weight: 700; }
.timeline { display: grid; grid-template-columns: minmax(6rem, max-content) 1fr max-content; gap: .25rem .8rem;
  align-items: center; }
.track { position: relative; height: 1.1rem; background: var(--panel); border-radius: 3px; }
.span { position: absolute; top: 0; bottom: 0; min-width: 2px; border-radius: 2px; opacity: .9; }
.step-create_worktree { background: #8c959f; } .step-setup { background: #bf8700; } .step-execute { background: #0969da; }
.step-commit { background: #8250df; } .step-validate { background: #1a7f37; } .step-finalize { background: #57606a; }
.span.halted { background: var(--bad); } .span.open { background-image: repeating-linear-gradient(45deg,
  transparent 0 4px, rgba(255,255,255,.35) 4px 8px); }
.axis { display: flex; justify-content: space-between; color: var(--muted); font-size: 12px; grid-column: 2; }
.legend { display: flex; gap: .8rem; flex-wrap: wrap; font-size: 12px; color: var(--muted); margin: .4rem 0; }
.legend i { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; vertical-align: -2px; margin-right: .25rem; }
.side { overflow-x: auto; } .side table td, .side table th { min-width: 12rem; }
ul.plain { margin: .2rem 0; padding-left: 1.2rem; }
.live { font-size: 12px; color: var(--muted); } .live.on::before { content: "\\25CF "; color: var(--ok); }
.runs td:first-child { white-space: nowrap; } tr.selected td { background: var(--panel); }
.nowrap { white-space: nowrap; overflow-wrap: normal; }
[hidden] { display: none !important; }
"""
