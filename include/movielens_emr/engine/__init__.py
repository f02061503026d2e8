"""The similarity engines: what each computes, its options and its stage 2 plan."""
