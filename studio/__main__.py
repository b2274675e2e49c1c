"""Command line of the studio (the page itself is ``python app.py``).

    python -m studio dashboard --db sqlite:///studio-data/studio.sqlite --out dashboard.html [--csv votes.csv]

``--db`` is any SQLAlchemy URL of the studio's database (default: ``STUDIO_DATABASE_URL``); without one, the page
holds only the evaluation results (reward and taste against β). The Pick-a-Pic parquet export needs the stored
images and is one of the page's exports (the Dashboard tab, ``studio.export``).
"""

from __future__ import annotations

import argparse
import os
import sys

from sqlalchemy.engine import make_url

from .dashboard import RESULTS_DIR, load_results, votes_csv, write_dashboard
from .vote_records import read_generations, read_votes


def _hide_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not even a URL
        return repr(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studio")
    commands = parser.add_subparsers(dest="command", required=True)
    dash = commands.add_parser("dashboard", help="plotly dashboard of votes and results as one offline HTML file")
    dash.add_argument("--db", default=os.environ.get("STUDIO_DATABASE_URL"),
                      help="SQLAlchemy URL of the studio's database (default: $STUDIO_DATABASE_URL)")
    dash.add_argument("--results", default=str(RESULTS_DIR), help="folder of evaluation result JSON files")
    dash.add_argument("--out", default="dashboard.html", help="the HTML file to write")
    dash.add_argument("--csv", help="also write the votes as CSV here")
    dash.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals")
    dash.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)

    try:
        votes = read_votes(args.db) if args.db else ()
        generations = read_generations(args.db) if args.db else ()
    except Exception as e:  # noqa: BLE001 - a wrong URL or database is a message, not a stack trace
        print(f"error: could not read the studio database {_hide_password(args.db)}: {e}", file=sys.stderr)
        return 2
    results, skipped = load_results(args.results)
    out = write_dashboard(args.out, votes, generations, results, n_boot=args.n_boot, rng=args.seed)
    print(f"wrote {out} ({len(votes)} votes, {len(generations)} generations, {len(results)} evaluation rows"
          + (f"; skipped {', '.join(skipped)}" if skipped else "") + ")")
    if args.csv:
        print(f"wrote {votes_csv(votes, args.csv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
