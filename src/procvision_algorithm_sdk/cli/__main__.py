"""`python -m procvision_algorithm_sdk.cli`: the Dev Runner, where the developer tools exist."""

import sys

if __name__ == "__main__":
    from procvision_algorithm_sdk.cli import main

    sys.exit(main())
