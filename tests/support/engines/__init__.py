"""Engines that only the tests register, to check the engine seam."""
