"""`python -m exporter` is the same program as `boomi-listener-exporter`."""

import sys

from exporter.cli import main

sys.exit(main())
