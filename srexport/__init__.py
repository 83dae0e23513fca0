"""sr-export: compile super-resolution networks to deployable bundles and run them."""

__version__ = "0.1.0"
