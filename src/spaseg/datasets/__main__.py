"""``python -m spaseg.datasets DIR``: write the demo project into DIR (see ``make_demo``)."""

from ._demo import main

main()
