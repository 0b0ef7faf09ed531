"""``python -m hybridmat.cli``: the console script."""

from hybridmat.cli import main

main()
