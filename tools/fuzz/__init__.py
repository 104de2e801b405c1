"""Coverage-guided fuzz harnesses (atheris) for every entry point that takes untrusted bytes."""
