import sys

from civic_warehouse.cli import main

if __name__ == "__main__":
    sys.exit(main())
