import sys

from ge2e.cli import main

sys.exit(main())
