"""``python -m benchmarks``: the benchmark suite, same as ``colorshare bench`` (see colorshare/bench)."""

import sys

from colorshare.bench import main

sys.exit(main())
