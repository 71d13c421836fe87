"""What runs: component command lines and the PKI, for any backend."""
