"""``python -m bot`` does what the ``ishowtts`` console script does."""

import sys

from bot.cli import main

sys.exit(main())
