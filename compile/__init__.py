"""The jaxlic hardware toolchain: VTA configuration, ISA, scheduler, simulator and perf model."""
