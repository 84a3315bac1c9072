"""`python -m cifar10_mlops.team_stack ...`: the same as `cifar10-mlops team-stack ...`."""

from cifar10_mlops.team_stack.cli import main

main()
