"""nasframe: neural architecture search with YAML spaces, ASNG and plugins."""
__version__ = "0.1.0"
