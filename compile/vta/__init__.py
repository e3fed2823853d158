"""VTA: configs, instruction encoding, lowering of int8 convolutions, simulation, performance."""
