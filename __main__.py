"""ox-estate: an Open-Xchange App Suite estate as one Pulumi program.

Thin on purpose: read and validate the stack config (nothing is created if it is wrong),
build the estate, export the outputs other stacks reference (named in components/estate.py).
"""

import pulumi

from components.core import collector, config
from components.estate import Estate

collector.tune_for_evaluation()
cfg = config.load()
estate = Estate("ox", cfg)

for name, value in estate.stack_outputs.items():
    pulumi.export(name, value)
