"""`python -m procvision_devtools`."""

import sys

from .main import main

if __name__ == "__main__":
    sys.exit(main())
