"""``python -m mlops.serving --config DIR/config.json``: run a scoring server in the foreground."""

import sys

from mlops.serving.supervisor import main

sys.exit(main())
