from __future__ import absolute_import

import sys

from bench.driver import main

sys.exit(main())
