"""`python -m ssmprobe`: the command line."""

import sys

from ssmprobe.cli import main

sys.exit(main())
