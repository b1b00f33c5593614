"""`python -m moe_reduce ...`: see cli.py."""
from .cli import main

main()
