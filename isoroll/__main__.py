import sys

from isoroll.cli import main

sys.exit(main())
