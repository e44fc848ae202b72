"""Serve Keystone's WSGI application with waitress in this one process.

Keystone parses sys.argv with oslo.config when its application is built, so
our own arguments are read first and sys.argv is cleared before the import.
The configuration file comes from OS_KEYSTONE_CONFIG_FILES.
"""

import argparse
import sys

import waitress


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5055)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]
    from keystone.wsgi.api import application  # noqa: E402 (argv first)
    waitress.serve(application, host=args.host, port=args.port,
                   threads=args.threads, channel_timeout=60,
                   ident="keystone")


if __name__ == "__main__":
    main()
