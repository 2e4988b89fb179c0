"""``python -m gradtune``: the ``gradtune`` command, for an environment whose scripts are not on PATH."""

import sys

from gradtune.cli.main import main

sys.exit(main())
