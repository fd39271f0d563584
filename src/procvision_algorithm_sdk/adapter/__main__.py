"""`python -m procvision_algorithm_sdk.adapter`: the worker process the Runner spawns."""

import sys

from .entry import main

sys.exit(main())
