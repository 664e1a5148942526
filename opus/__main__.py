import sys

from opus.cli import main

sys.exit(main())
