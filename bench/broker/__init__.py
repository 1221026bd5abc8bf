"""Platform benchmark: the local broker's start-up."""
