import sys

from hacray.cli import main

sys.exit(main())
