import sys

from dnr_sweep.cli import main

sys.exit(main())
