"""`python -m procvision_algorithm_sdk.cli`."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
